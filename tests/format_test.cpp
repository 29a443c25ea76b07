// The .mlm format: a round trip, and one test per corruption the loader must name.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>

#include "mobilellm/memory.h"
#include "mobilellm/model_file.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using format::FileHeader;
using format::TensorEntry;
using testing::TempDir;

ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 16, c.dim = 8, c.ffn_dim = 12, c.n_blocks = 2, c.n_repeat = 2;
  c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 4, c.n_ctx = 32;
  return c;
}

// Writes a valid tiny model; tensor i holds bytes derived from i so the round trip can check them.
std::string WriteTiny(const TempDir& dir, const ModelConfig& c = TinyConfig()) {
  ModelWriter w(c, "format_test");
  int i = 0;
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    const int seed = i++;
    w.Add(spec.name, DType::kF32, spec.shape, [n, seed](uint8_t* dst) {
      for (int64_t k = 0; k < n; ++k) {
        const float v = float(seed) + 0.001f * float(k);
        std::memcpy(dst + 4 * k, &v, 4);
      }
      return Status();
    });
  }
  w.Add(format::kTokenizerTensor, DType::kU8, {5}, [](uint8_t* dst) {
    std::memcpy(dst, "spm!!", 5);
    return Status();
  });
  const std::string path = dir / "tiny.mlm";
  EXPECT_TRUE(w.Write(path, true).ok());
  return path;
}

// The contents WriteTiny wrote for config c, read back through the loader's mapping.
void ExpectTinyContents(const ModelFile& file, const ModelConfig& c) {
  int i = 0;
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    const format::TensorEntry* e = file.Find(spec.name);
    ASSERT_NE(e, nullptr) << spec.name;
    EXPECT_EQ(e->offset % format::kDefaultAlignment, 0u);
    const Tensor t = file.View(*e);
    EXPECT_EQ(t.f32()[0], float(i)) << spec.name;
    EXPECT_FLOAT_EQ(t.f32()[t.numel() - 1], float(i) + 0.001f * float(t.numel() - 1));
    ++i;
  }
  EXPECT_EQ(file.Bytes(*file.Find("tokenizer")), "spm!!");
  EXPECT_TRUE(file.Verify().ok());
}

TEST(Format, RoundTrip) {
  TempDir dir;
  const ModelConfig c = TinyConfig();
  const std::string path = WriteTiny(dir);
  auto f = ModelFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const ModelFile& file = **f;
  EXPECT_EQ(file.config().dim, c.dim);
  EXPECT_EQ(file.config().n_repeat, 2);
  EXPECT_EQ(file.config().n_layers(), 4);
  EXPECT_TRUE(file.config().tied_head);
  EXPECT_EQ(file.entries().size(), ExpectedTensors(c).size() + 1);
  EXPECT_EQ(file.header().alignment, format::kDefaultAlignment);
  ExpectTinyContents(file, c);
}

// The writer stages the file in 2 MiB pieces (so the page cache can hold it in 2 MiB folios) and
// the loader maps it at a 2 MiB boundary: a file of several pieces, with tensors that straddle
// them, reads back byte for byte.
TEST(Format, RoundTripAcrossWritePieces) {
  TempDir dir;
  ModelConfig c = TinyConfig();
  c.vocab_size = 40000, c.dim = 64, c.ffn_dim = 96, c.head_dim = 32;  // embedding: 10.2 MB of f32
  const std::string path = WriteTiny(dir, c);
  auto f = ModelFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const ModelFile& file = **f;
  EXPECT_GT(file.size(), 5 * kHugePage);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&file.header()) % kHugePage, 0u);
  ExpectTinyContents(file, c);
}

TEST(Memory, PageBufferIsAlignedZeroedAndWritable) {
  for (const bool huge : {true, false}) {
    PageBuffer b(3 * kHugePage + 5, huge);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kHugePage, 0u);
    EXPECT_EQ(b.size(), 3 * kHugePage + 5);
    size_t nonzero = 0;
    for (size_t i = 0; i < b.size(); i += 4093) nonzero += b.data()[i] != 0;
    EXPECT_EQ(nonzero, 0u);
    std::memset(b.data(), 7, b.size());
    EXPECT_EQ(b.data()[b.size() - 1], 7);
    // Counted over the whole mapping (2 MiB of slack included); never for a 4 KiB-page buffer.
    // Whether THP gives 2 MiB pages depends on the kernel and its free memory: not asserted.
    const uint64_t huge_bytes = HugePageBytes(b.data(), b.size());
    EXPECT_LE(huge_bytes, 5 * kHugePage);
    if (!huge) {
      EXPECT_EQ(huge_bytes, 0u);
    }
    std::printf("PageBuffer(huge=%d): %llu bytes on 2 MiB pages\n", int(huge),
                static_cast<unsigned long long>(huge_bytes));
  }
}

TEST(Format, WriterRefusesToOverwriteAndLeavesNothingOnFailure) {
  TempDir dir;
  const std::string path = WriteTiny(dir);
  ModelWriter w(TinyConfig(), "x");
  w.Add("token_embd", DType::kF32, {16, 8},
        [](uint8_t*) { return Status::Error("source vanished"); });
  EXPECT_NE(w.Write(path, false).message().find("already exists"), std::string::npos);
  const Status s = w.Write(dir / "new.mlm", false);
  EXPECT_EQ(s.message(), "source vanished");
  EXPECT_FALSE(testing::FileExists(dir / "new.mlm"));
  EXPECT_EQ(testing::RunCommand("ls " + dir.path() + " | grep -c tmp").out, "0\n");
}

struct Corruption {
  const char* name;
  std::function<void(std::string&)> mutate;
  const char* expected;  // substring of the error
};

FileHeader& Header(std::string& b) {
  return *reinterpret_cast<FileHeader*>(b.data());
}
TensorEntry& Entry(std::string& b, int i) {
  return *reinterpret_cast<TensorEntry*>(b.data() + Header(b).table_offset +
                                         i * format::kEntrySize);
}
int IndexOf(std::string& b, const char* name) {
  for (uint32_t i = 0; i < Header(b).tensor_count; ++i)
    if (std::strcmp(Entry(b, i).name, name) == 0) return int(i);
  return -1;
}

const Corruption kCorruptions[] = {
    {"gguf", [](std::string& b) { std::memcpy(b.data(), "GGUF", 4); },
     "bad magic: expected 'MLM1', found 'GGUF' (is this a GGUF file?"},
    {"pytorch", [](std::string& b) { std::memcpy(b.data(), "PK\x03\x04", 4); },
     "looks like a PyTorch checkpoint"},
    {"empty", [](std::string& b) { b.clear(); }, "file is empty"},
    {"short_header", [](std::string& b) { b.resize(100); }, "shorter than the 512-byte header"},
    {"newer_version", [](std::string& b) { Header(b).version = 7; },
     "format version 7 was made by a newer mobilellm"},
    {"truncated", [](std::string& b) { b.resize(b.size() - 10); }, "truncated: header says"},
    {"trailing", [](std::string& b) { b += "junk"; }, "trailing data"},
    {"alignment", [](std::string& b) { Header(b).alignment = 48; },
     "alignment: expected a power of two >= 64, found 48"},
    {"header_size", [](std::string& b) { Header(b).header_size = 256; },
     "header_size: expected 512, found 256"},
    {"table_outside", [](std::string& b) { Header(b).tensor_count = 100000; }, "tensor table"},
    // Found by tools/fuzz.sh: an offset whose sum with the table's size wraps past 2^64.
    {"table_offset_wraps", [](std::string& b) { Header(b).table_offset = ~uint64_t(0) - 255; },
     "tensor table"},
    {"tensor_outside",
     [](std::string& b) { Entry(b, 1).offset = (Header(b).file_size / 256 + 1) * 256; },
     "lies outside the data region"},
    {"misaligned", [](std::string& b) { Entry(b, 1).offset += 4; },
     "is not a multiple of the alignment"},
    {"overlap", [](std::string& b) { Entry(b, 2).offset = Entry(b, 1).offset; }, "overlap"},
    {"duplicate", [](std::string& b) { std::memcpy(Entry(b, 2).name, "blk.0.attn_norm", 16); },
     "duplicate tensor 'blk.0.attn_norm'"},
    {"missing",
     [](std::string& b) {
       std::strcpy(Entry(b, IndexOf(b, "blk.1.ffn_up")).name, "blk.1.ffn_upx");
     },
     "missing tensor 'blk.1.ffn_up'"},
    {"shape",
     [](std::string& b) {
       TensorEntry& e = Entry(b, IndexOf(b, "blk.0.ffn_gate"));
       std::swap(e.shape[0], e.shape[1]);
     },
     "tensor 'blk.0.ffn_gate': shape [8, 12] does not match the config, expected [12, 8]"},
    {"nbytes", [](std::string& b) { Entry(b, 1).nbytes += 4; }, "does not match shape"},
    {"dtype", [](std::string& b) { Entry(b, 1).dtype = 99; }, "unknown dtype 99"},
    {"norm_dtype",
     [](std::string& b) {
       TensorEntry& e = Entry(b, IndexOf(b, "blk.0.attn_norm"));
       e.dtype = uint32_t(DType::kF16), e.nbytes /= 2;
     },
     "tensor 'blk.0.attn_norm': dtype f16 not allowed (expected f32)"},
    {"layout", [](std::string& b) { Entry(b, 1).layout = 5; },
     "unknown layout 5 (expected 0 = rows or 1 = panels)"},
    {"panels_on_floats", [](std::string& b) { Entry(b, 1).layout = 1; },
     "panel layout needs a q8_0 or q4_0 matrix with rows a multiple of 16, found f32 [8]"},
    {"rank", [](std::string& b) { Entry(b, 1).rank = 0; }, "rank 0 not in 1..4"},
    {"name", [](std::string& b) { std::memset(Entry(b, 1).name, 'x', sizeof(TensorEntry::name)); },
     "not NUL-terminated"},
    {"gqa", [](std::string& b) { Header(b).config.n_kv_heads = 3; },
     "n_heads (2) must be a multiple of n_kv_heads (3)"},
    {"dim", [](std::string& b) { Header(b).config.head_dim = 6; },
     "dim (8) must equal n_heads * head_dim (2 * 6)"},
    {"zero", [](std::string& b) { Header(b).config.ffn_dim = 0; }, "ffn_dim must be > 0, found 0"},
    {"bos", [](std::string& b) { Header(b).config.bos_id = 16; }, "outside the vocabulary of 16"},
};

class FormatCorruption : public ::testing::TestWithParam<Corruption> {};

TEST_P(FormatCorruption, IsRefusedWithItsMessage) {
  const Corruption& c = GetParam();
  TempDir dir;
  std::string bytes = testing::ReadAll(WriteTiny(dir));
  c.mutate(bytes);
  const std::string path = dir / "bad.mlm";
  testing::WriteAll(path, bytes);
  auto f = ModelFile::Open(path);
  ASSERT_FALSE(f.ok()) << c.name;
  const std::string& msg = f.status().message();
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message must start with the file name: " << msg;
  EXPECT_NE(msg.find(c.expected), std::string::npos) << "got: " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line";
}

INSTANTIATE_TEST_SUITE_P(All, FormatCorruption, ::testing::ValuesIn(kCorruptions),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(FormatCorruption, Extra) {
  // A file with a tensor the config does not imply (an "output" head while tied_head is set).
  TempDir dir;
  ModelConfig c = TinyConfig();
  c.tied_head = false;
  const std::string untied = WriteTiny(dir, c);
  std::string bytes = testing::ReadAll(untied);
  Header(bytes).config.tied_head = 1;
  testing::WriteAll(dir / "extra.mlm", bytes);
  auto f = ModelFile::Open(dir / "extra.mlm");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("unexpected tensor 'output'"), std::string::npos)
      << f.status().message();
}

TEST(FormatCorruption, ChecksumMismatchIsFoundByVerify) {
  TempDir dir;
  std::string bytes = testing::ReadAll(WriteTiny(dir));
  bytes[Entry(bytes, 3).offset + 5] ^= 0x40;
  testing::WriteAll(dir / "flip.mlm", bytes);
  auto f = ModelFile::Open(dir / "flip.mlm");
  ASSERT_TRUE(f.ok()) << "a flipped bit in data is only visible to Verify";
  const Status s = (*f)->Verify();
  EXPECT_NE(
      s.message().find("checksum mismatch in tensor '" + std::string(Entry(bytes, 3).name) + "'"),
      std::string::npos)
      << s.message();
}

TEST(FormatCorruption, MissingFile) {
  auto f = ModelFile::Open("/nonexistent/model.mlm");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(), "/nonexistent/model.mlm: cannot open: No such file or directory");
}

}  // namespace
}  // namespace mobilellm
