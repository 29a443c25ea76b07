// mobilellm-convert on checkpoints written by real torch.save and by a safetensors writer:
// converted tensors equal the source values, and every bad input gets its one-line error.
#include <cctype>
#include <cstring>

#include "checkpoint.h"
#include "mobilellm/model_file.h"
#include "mobilellm/quantize.h"
#include "pickle.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::RunCommand;
using testing::TempDir;

using testing::Hf;

// Found by fuzz_unpickle (the ASan + UBSan replay of the 2026-12-03 campaign): a tensor with a
// zero dimension reached memcpy with null pointers, which is undefined even for 0 bytes. Under the
// sanitizer stage (-fno-sanitize-recover) the old code aborts here.
TEST(ConvertTensor, EmptyTensorTouchesNothing) {
  const convert::SourceTensor contiguous{"empty.bin", DType::kF32, {0, 4}, {4, 1}, nullptr};
  convert::ConvertTensor(contiguous, DType::kF32, nullptr);
  const convert::SourceTensor strided{"empty.bin", DType::kF16, {4, 0}, {1, 4}, nullptr};
  convert::ConvertTensor(strided, DType::kF32, nullptr);
}

class ConvertCase : public ::testing::TestWithParam<const char*> {};

TEST_P(ConvertCase, TensorsEqualTheSourceValues) {
  auto ckpt = convert::Checkpoint::Open(Hf(GetParam()));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().message();
  for (const char* dtype : {"f32", "f16", "bf16", "q8_0", "q4_0"}) {
    const bool quantized = dtype[0] == 'q';
    TempDir dir;
    testing::ConvertCase(GetParam(), dtype, dir / "m.mlm");
    auto file = ModelFile::Open(dir / "m.mlm");
    ASSERT_TRUE(file.ok()) << file.status().message();
    ASSERT_TRUE((*file)->Verify().ok());
    const ModelConfig& c = (*file)->config();
    EXPECT_EQ(c.tied_head, !(*ckpt)->tensors.count("lm_head.weight"))
        << "an lm_head in the file is used";
    int checked = 0;
    for (const TensorSpec& spec : ExpectedTensors(c)) {
      const auto it = (*ckpt)->tensors.find(convert::HfTensorName(spec.name, c.arch));
      ASSERT_NE(it, (*ckpt)->tensors.end()) << spec.name;
      const convert::SourceTensor& src = it->second;
      const format::TensorEntry* e = (*file)->Find(spec.name);
      const Tensor t = (*file)->View(*e);
      ASSERT_EQ(std::vector<int64_t>(t.shape, t.shape + t.rank), src.shape) << spec.name;
      // The converted bytes are the source values rounded once to the file's dtype.
      std::vector<uint8_t> want(format::TensorBytes(e->dtype, e->rank, e->shape));
      if (format::IsQuantized(e->dtype)) {
        std::vector<float> f32(size_t(t.numel()));
        convert::ConvertTensor(src, DType::kF32, reinterpret_cast<uint8_t*>(f32.data()));
        QuantizeMatrix(f32.data(), t.shape[0], t.shape[1], t.dtype, want.data(), t.layout);
        // Panels (the fast layout for every kernel table) whenever the rows allow.
        EXPECT_EQ(t.layout, t.shape[0] % 16 == 0 ? format::Layout::kPanels : format::Layout::kRows)
            << spec.name;
      } else {
        convert::ConvertTensor(src, t.dtype, want.data());
      }
      if (quantized && !spec.is_norm) {
        // q4_0 keeps the embedding / output head at q8_0; rows not a multiple of 32 fall back to
        // f16.
        const bool q8_head =
            std::string(dtype) == "q4_0" && (spec.name == "token_embd" || spec.name == "output");
        const char* want_type = t.shape[1] % 32 ? "f16" : q8_head ? "q8_0" : dtype;
        EXPECT_STREQ(format::DTypeName(e->dtype), want_type) << spec.name;
      } else if (!spec.is_norm) {
        EXPECT_STREQ(format::DTypeName(uint32_t(t.dtype)), dtype) << spec.name;
      }
      ASSERT_EQ(std::memcmp(t.data, want.data(), want.size()), 0)
          << spec.name << " in the " << dtype << " file";
      if (src.dtype == t.dtype) {
        EXPECT_EQ(std::memcmp(t.data, src.data, want.size()), 0) << "same dtype: bit-exact copy";
      }
      ++checked;
    }
    EXPECT_EQ(size_t(checked), (*ckpt)->tensors.size()) << "every source tensor is used";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertCase,
                         ::testing::Values("ls-gqa3-tied-bin-f32", "gqa2-untied-st-f32",
                                           "r1-tied-gqa3-llama3-st-f32-sharded",
                                           "r1-untied-gqa4-nope-chunked-st-bf16",
                                           "ls-lmhead-bin-bf16", "ls-tied-st-f16-sharded",
                                           "gqa3-bin-f16-sharded"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(Convert, ReadsConfigFlags) {
  auto ls = convert::Checkpoint::Open(Hf("ls-gqa3-tied-bin-f32"));
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ((*ls)->config.n_repeat, 2);
  EXPECT_TRUE((*ls)->config.tied_head);
  EXPECT_EQ((*ls)->config.n_heads / (*ls)->config.n_kv_heads, 3);
  auto lm = convert::Checkpoint::Open(Hf("ls-lmhead-bin-bf16"));
  ASSERT_TRUE(lm.ok());
  EXPECT_FALSE((*lm)->config.tied_head)
      << "share_embedding is set, but the lm_head.weight present wins";
}

TEST(Convert, MaliciousPickleIsRefusedAndNothingRuns) {
  TempDir dir;
  const std::string bad = testing::FixturesDir() + "/bad";
  const std::string marker = bad + "/evil-was-executed";
  ASSERT_FALSE(testing::FileExists(marker));
  const auto r = RunCommand(testing::Convert() + " " + bad + "/evil -o " + dir / "evil.mlm");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("refusing to load global 'posix.system'"), std::string::npos) << r.err;
  EXPECT_FALSE(testing::FileExists(marker)) << "the pickle's os.system call was executed";
  EXPECT_FALSE(testing::FileExists(dir / "evil.mlm"));
}

struct BadCase {
  const char* dir;
  const char* expected;
};

class ConvertError : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConvertError, OneLineExitOneNoOutput) {
  TempDir dir;
  const auto r = RunCommand(testing::Convert() + " " + testing::FixturesDir() + "/bad/" +
                            GetParam().dir + " -o " + dir / "out.mlm");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(GetParam().expected), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(RunCommand("ls -A " + dir.path()).out, "") << "no output or temporary file may remain";
}

INSTANTIATE_TEST_SUITE_P(
    Bad, ConvertError,
    ::testing::Values(
        BadCase{"missing-tensor", "missing tensor 'model.layers.1.mlp.up_proj.weight'"},
        BadCase{
            "bad-shape",
            "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [200, 96], expected [208, 96]"},
        BadCase{"bad-arch", "unsupported architecture 'GPT2LMHeadModel'"},
        BadCase{"no-weights", "no weights: expected model.safetensors or pytorch_model.bin"},
        BadCase{"truncated", "corrupt zip archive"},
        // The weights file instead of its directory: read as an .mlm to re-encode, and named.
        BadCase{"bad-shape/pytorch_model.bin",
                "this looks like a PyTorch checkpoint, e.g. pytorch_model.bin: convert its "
                "directory"}),
    [](const auto& info) {
      std::string n = info.param.dir;
      for (char& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

TEST(Convert, RefusesToOverwriteWithoutForce) {
  TempDir dir;
  testing::WriteAll(dir / "m.mlm", "precious");
  const auto r =
      RunCommand(testing::Convert() + " " + Hf("gqa2-untied-st-f32") + " -o " + dir / "m.mlm");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists (use --force to overwrite)"), std::string::npos) << r.err;
  EXPECT_EQ(testing::ReadAll(dir / "m.mlm"), "precious");
}

TEST(Convert, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCommand(testing::Convert() + " --no-such-flag").exit_code, 2);
  EXPECT_EQ(RunCommand(testing::Convert() + " -o x.mlm").exit_code, 2)
      << "neither a checkpoint nor --random";
  EXPECT_EQ(RunCommand(testing::Convert() + " --random 7b -o x.mlm --tokenizer t").exit_code, 2);
}

TEST(Convert, RandomPresetHasTheExactShape) {
  if (testing::Emulated())
    GTEST_SKIP() << "125M random weights take minutes under an emulator; the shapes are the same "
                    "on every architecture";
  TempDir dir;
  const auto r =
      RunCommand(testing::Convert() + " --random 125m-ls --dtype f16 -q -o " + dir / "ls.mlm" +
                 " --tokenizer " + testing::FixturesDir() + "/tiny.model --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f = ModelFile::Open(dir / "ls.mlm");
  ASSERT_TRUE(f.ok()) << f.status().message();
  const ModelConfig& c = (*f)->config();
  EXPECT_EQ(c.n_blocks, 30);
  EXPECT_EQ(c.n_repeat, 2);
  EXPECT_EQ(c.n_layers(), 60);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.ffn_dim, 1536);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.StoredParams(), 124635456) << "MobileLLM-125M's parameter count";
  const auto info = RunCommand(testing::Mobilellm() + " info " + dir / "ls.mlm");
  EXPECT_NE(info.out.find("blocks 30 x repeat 2 = 60 layers"), std::string::npos) << info.out;
}

// --layout: panels by default, planar rows on request; the same numbers either way, so the
// reference kernels generate the same text from both files.
TEST(Convert, LayoutFlagChoosesPanelsOrRows) {
  TempDir dir;
  const std::string hf = Hf("gqa2-untied-st-f32");
  for (const char* layout : {"panels", "rows"}) {
    const auto r = RunCommand(testing::Convert() + " " + hf + " --dtype q8_0 -q --layout " +
                              layout + " -o " + dir / (std::string(layout) + ".mlm"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const auto info_p = RunCommand(testing::Mobilellm() + " info " + dir / "panels.mlm");
  const auto info_r = RunCommand(testing::Mobilellm() + " info " + dir / "rows.mlm");
  EXPECT_NE(info_p.out.find("q8_0 in panels: "), std::string::npos) << info_p.out;
  EXPECT_EQ(info_r.out.find("in panels"), std::string::npos) << info_r.out;
  EXPECT_NE(info_r.out.find("q8_0: "), std::string::npos) << info_r.out;
  const std::string gen = " generate -p 'the cat' -n 12 --temp 0 -m ";
  const auto gen_p =
      RunCommand("MOBILELLM_ISA=ref " + testing::Mobilellm() + gen + dir / "panels.mlm");
  const auto gen_r =
      RunCommand("MOBILELLM_ISA=ref " + testing::Mobilellm() + gen + dir / "rows.mlm");
  ASSERT_EQ(gen_p.exit_code, 0) << gen_p.err;
  EXPECT_FALSE(gen_p.out.empty());
  EXPECT_EQ(gen_p.out, gen_r.out);
  EXPECT_EQ(
      RunCommand(testing::Convert() + " " + hf + " --layout tiles -o " + dir / "x.mlm").exit_code,
      2);
}

// The unpickler alone: a GLOBAL outside the allow-list is refused before REDUCE could call it.
TEST(Unpickler, RefusesForeignGlobals) {
  const std::string evil =
      std::string("\x80\x02") + "cbuiltins\neval\nq\x00X\x04\x00\x00\x00" + "1+1" + "\x85R.";
  auto r =
      convert::Unpickle(reinterpret_cast<const uint8_t*>(evil.data()), evil.size(), "evil.pkl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("refusing to load global 'builtins.eval'"),
            std::string::npos);
}

TEST(Unpickler, BoundsNesting) {
  std::string deep = "\x80\x02";
  for (int i = 0; i < 200; ++i) deep += "]";
  for (int i = 0; i < 199; ++i) deep += "a";
  deep += ".";
  auto r =
      convert::Unpickle(reinterpret_cast<const uint8_t*>(deep.data()), deep.size(), "deep.pkl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nested deeper"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace mobilellm
