// MobileLLM-R1 (HF Llama4ForCausalLM, llama4_text) outside the forward pass: what the converter
// reads from config.json and refuses, the format-version-2 fields and their checks, `info`.
// Parity with PyTorch is in model_test.cpp (the r1-* cases of tools/reference.py).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>

#include "checkpoint.h"
#include "mobilellm/mobilellm.h"
#include "mobilellm/model_file.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::RunCommand;
using testing::TempDir;

using testing::Hf;

// A copy of fixture `name`'s checkpoint directory with config.json edited by `edit`.
std::string EditedCheckpoint(const TempDir& dir, const std::string& name,
                             const std::function<void(nlohmann::json&)>& edit) {
  const std::string out = dir / "hf";
  std::filesystem::copy(Hf(name), out, std::filesystem::copy_options::recursive);
  nlohmann::json j = testing::ReadJson(out + "/config.json");
  edit(j);
  testing::WriteAll(out + "/config.json", j.dump());
  return out;
}

struct Refusal {
  const char* name;
  std::function<void(nlohmann::json&)> edit;
  const char* expected;  // substring of the one error line
};

const Refusal kRefusals[] = {
    {"moe_layers", [](nlohmann::json& j) { j["num_local_experts"] = 16, j["moe_layers"] = {1}; },
     "mixture-of-experts layers are not supported (1 MoE layers, num_local_experts 16)"},
    // HF's default: without moe_layers, every interleave_moe_layer_step-th layer (1: all) is MoE.
    {"moe_by_default",
     [](nlohmann::json& j) {
       j.erase("moe_layers"), j.erase("interleave_moe_layer_step"), j.erase("num_local_experts");
     },
     "mixture-of-experts layers are not supported (3 MoE layers, num_local_experts 16)"},
    {"vision",
     [](nlohmann::json& j) {
       j["vision_config"] = {{"hidden_size", 8}};
     },
     "a multimodal Llama-4 config (vision_config / text_config) is not supported"},
    {"multimodal_arch",
     [](nlohmann::json& j) { j["architectures"] = {"Llama4ForConditionalGeneration"}; },
     "unsupported architecture 'Llama4ForConditionalGeneration'"},
    {"attention_bias", [](nlohmann::json& j) { j["attention_bias"] = true; },
     "attention_bias true is not supported"},
    {"rope_yarn",
     [](nlohmann::json& j) {
       j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
     },
     "rope scaling type 'yarn' is not supported (mobilellm runs none or 'llama3')"},
    {"rope_llama3_incomplete",
     [](nlohmann::json& j) {
       j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 4.0}};
     },
     "missing \"low_freq_factor\""},
    {"layer_type",
     [](nlohmann::json& j) {
       j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
     },
     "layer 1 has attention type 'sliding_attention' (supported: full_attention, "
     "chunked_attention)"},
    {"chunk_size", [](nlohmann::json& j) { j["attention_chunk_size"] = 24; },
     "attention_chunk_size 24 is not supported (mobilellm needs a multiple of 16)"},
    {"chunk_none", [](nlohmann::json& j) { j["attention_chunk_size"] = nullptr; },
     "chunked_attention layers need an attention_chunk_size"},
    {"no_rope_short",
     [](nlohmann::json& j) {
       j["no_rope_layers"] = {1, 1};
     },
     "\"no_rope_layers\" has 2 entries for 3 layers"},
    {"eos_list",
     [](nlohmann::json& j) {
       j["eos_token_id"] = {2, 3, 4, 5, 6};
     },
     "\"eos_token_id\" must list 1 to 4 ids, found 5"},
    {"eos_outside",
     [](nlohmann::json& j) {
       j["eos_token_id"] = {2, 400};
     },
     "eos id 400 outside the vocabulary of 400"},
    {"qk_norm_type", [](nlohmann::json& j) { j["use_qk_norm"] = "yes"; },
     "\"use_qk_norm\" must be true or false"},
};

class R1Refusal : public ::testing::TestWithParam<Refusal> {};

TEST_P(R1Refusal, ConverterNamesWhatItDoesNotRun) {
  TempDir dir;
  const std::string hf = EditedCheckpoint(dir, "r1-mixed-chunked-st-f32", GetParam().edit);
  const auto r = RunCommand(testing::Convert() + " " + hf + " -o " + dir / "m.mlm");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(GetParam().expected), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty());
  EXPECT_FALSE(testing::FileExists(dir / "m.mlm"));
}

INSTANTIATE_TEST_SUITE_P(Config, R1Refusal, ::testing::ValuesIn(kRefusals),
                         [](const auto& info) { return std::string(info.param.name); });

// HF's defaults when a field is absent: head_dim 128 (not hidden / heads; an explicit null means
// hidden / heads), a NoPE layer every 4th layer, RoPE layers chunked in 8192s, temperature tuning
// on, QK-norm on, untied, rope_theta 500000.
TEST(R1Config, AbsentFieldsTakeHfDefaults) {
  nlohmann::json j = {{"architectures", {"Llama4ForCausalLM"}},
                      {"vocab_size", 400},
                      {"hidden_size", 256},
                      {"num_hidden_layers", 8},
                      {"num_attention_heads", 4},
                      {"moe_layers", nlohmann::json::array()}};
  ModelConfig c;
  ASSERT_TRUE(convert::ReadLlama4Config(j, "config.json", &c).ok());
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.ffn_dim, 16384);
  EXPECT_EQ(c.n_ctx, 131072);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling, format::RopeScaling::kNone);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.attn_temperature_tuning);
  EXPECT_EQ(c.attn_scale, 0.1f);
  EXPECT_EQ(c.floor_scale, 8192.0f);
  EXPECT_FALSE(c.tied_head);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_TRUE(c.extra_eos_ids.empty());
  const uint8_t r = format::kChunked, n = format::kNoPe;
  EXPECT_EQ(c.layer_kinds, (std::vector<uint8_t>{r, r, r, n, r, r, r, n}));
  EXPECT_EQ(c.attention_chunk_size, 8192);
  j["head_dim"] = nullptr;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 32.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}};
  j["max_position_embeddings"] = 4096;
  ASSERT_TRUE(convert::ReadLlama4Config(j, "config.json", &c).ok());
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_scaling, format::RopeScaling::kLlama3);
  EXPECT_EQ(c.rope_original_n_ctx, 4096) << "defaults to max_position_embeddings";
}

// Converted R1 files: version 2 with the fields `info` reports; a v1 model stays version 1.
TEST(R1Format, VersionTwoOnlyWhenNeededAndInfoSaysWhatRuns) {
  TempDir dir;
  testing::ConvertCase("r1-untied-gqa4-nope-chunked-st-bf16", "f32", dir / "r1.mlm");
  testing::ConvertCase("gqa2-untied-st-f32", "f32", dir / "v1.mlm");
  auto r1 = ModelFile::Open(dir / "r1.mlm");
  auto v1 = ModelFile::Open(dir / "v1.mlm");
  ASSERT_TRUE(r1.ok() && v1.ok());
  EXPECT_EQ((*r1)->header().version, 2u);
  EXPECT_EQ((*v1)->header().version, 1u);
  const ModelConfig& c = (*r1)->config();
  EXPECT_EQ(c.arch, format::Arch::kLlama4Text);
  EXPECT_EQ(c.rope_style, format::RopeStyle::kInterleaved);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.attn_temperature_tuning);
  EXPECT_EQ(c.layer_kinds, (std::vector<uint8_t>{format::kChunked, format::kNoPe, format::kChunked,
                                                 format::kChunked}));
  EXPECT_EQ(c.attention_chunk_size, 16);
  EXPECT_FALSE(c.tied_head);
  const auto info = RunCommand(testing::Mobilellm() + " info " + dir / "r1.mlm");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  for (const char* want :
       {"format v2", "llama4_text (HF Llama4ForCausalLM, dense), QK-norm on (RoPE layers)",
        "NoPE layers: 1 (temperature tuning: attn_scale 0.5, floor_scale 4)",
        "chunked-attention layers: 0, 2-3 (chunks of 16)", "(interleaved)",
        "tokenizer:   sentencepiece, 400 pieces"})
    EXPECT_NE(info.out.find(want), std::string::npos) << want << "\n" << info.out;
  testing::ConvertCase("r1-tied-gqa3-llama3-st-f32-sharded", "f16", dir / "llama3.mlm");
  const auto info3 = RunCommand(testing::Mobilellm() + " info " + dir / "llama3.mlm");
  for (const char* want : {"eos 2, 3, 4",
                           "rope scaling llama3: factor 8, low/high freq factor 1/4, "
                           "original context 64",
                           "NoPE layers: none", "chunked-attention layers: none"})
    EXPECT_NE(info3.out.find(want), std::string::npos) << want << "\n" << info3.out;
}

// The loader checks the version-2 fields as it checks the rest of the header.
TEST(R1Format, LoaderRefusesBadVersionTwoFields) {
  TempDir dir;
  testing::ConvertCase("r1-mixed-chunked-st-f32", "f32", dir / "m.mlm");
  const std::string good = testing::ReadAll(dir / "m.mlm");
  const auto header = [](std::string& b) {
    return reinterpret_cast<format::FileHeader*>(b.data());
  };
  const auto kinds = [&](std::string& b) -> uint8_t* {
    const format::FileHeader& h = *header(b);
    for (uint32_t i = 0; i < h.tensor_count; ++i) {
      auto* e = reinterpret_cast<format::TensorEntry*>(b.data() + h.table_offset +
                                                       i * format::kEntrySize);
      if (std::strcmp(e->name, format::kLayerKindsTensor) == 0)
        return reinterpret_cast<uint8_t*>(b.data() + e->offset);
    }
    return nullptr;
  };
  const struct {
    const char* name;
    std::function<void(std::string&)> mutate;
    const char* expected;
  } cases[] = {
      {"flags", [&](std::string& b) { header(b)->config.flags |= 1u << 9; },
       "has bits this build does not know"},
      {"arch", [&](std::string& b) { header(b)->config.arch = 7; }, "unknown architecture 7"},
      {"kind_bits", [&](std::string& b) { kinds(b)[1] = 4; }, "layer 1 has unknown kind bits 4"},
      {"chunk", [&](std::string& b) { header(b)->config.attention_chunk_size = 20; },
       "attention_chunk_size must be a positive multiple of 16"},
      {"no_kinds",
       [&](std::string& b) { header(b)->config.flags &= ~uint32_t(format::kLayerKinds); },
       "unexpected tensor 'layer_kinds'"},
      {"rope_scaling", [&](std::string& b) { header(b)->config.rope_scaling = 3; },
       "unknown rope_scaling 3"},
      {"eos", [&](std::string& b) { header(b)->config.extra_eos_ids[0] = 400; },
       "eos id 400 outside the vocabulary of 400"},
      {"half_rope", [&](std::string& b) { header(b)->config.rope_style = 0; },
       "rope_style must be interleaved"},
  };
  for (const auto& c : cases) {
    std::string bad = good;
    c.mutate(bad);
    testing::WriteAll(dir / "bad.mlm", bad);
    auto f = ModelFile::Open(dir / "bad.mlm");
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_NE(f.status().message().find(c.expected), std::string::npos)
        << c.name << ": " << f.status().message();
  }
}

// Generation stops on any of the EOS ids, not only eos_id: the file's second extra EOS id is set to
// the 6th token PyTorch generates greedily, so generation ends right before it (unless an earlier
// token is already one of the ids).
TEST(R1Generate, StopsAtAnyEosId) {
  TempDir dir;
  const std::string name = "r1-tied-gqa3-llama3-st-f32-sharded";
  testing::ConvertCase(name, "f32", dir / "m.mlm");
  const auto golden = testing::ReadJson(testing::FixturesDir() + "/" + name + "/golden.json");
  const auto prompt = golden["prompt_ids"].get<std::vector<int>>();
  const auto greedy = golden["greedy_ids"].get<std::vector<int>>();
  std::string bytes = testing::ReadAll(dir / "m.mlm");
  auto& config = reinterpret_cast<format::FileHeader*>(bytes.data())->config;
  ASSERT_EQ(config.extra_eos_ids[0], 3);
  config.extra_eos_ids[1] = greedy[5];
  testing::WriteAll(dir / "eos.mlm", bytes);
  size_t stop = 5;
  for (size_t i = 0; i < 5; ++i)
    if (greedy[i] == greedy[5] || greedy[i] == 2 || greedy[i] == 3) stop = std::min(stop, i);

  auto model = Model::Load(dir / "eos.mlm");
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ((*model)->config().extra_eos_ids, (std::vector<int>{3, greedy[5]}));
  SessionOptions so;
  so.kv_type = DType::kF32;
  auto session = Session::Create(*model, so);
  ASSERT_TRUE(session.ok());
  GenerateOptions go;
  go.max_tokens = 20;
  go.sampling.temperature = 0;
  auto r = Generate(**session, prompt, go, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->stop_reason, StopReason::kEos);
  EXPECT_EQ(r->ids, std::vector<int>(greedy.begin(), greedy.begin() + long(stop)));
}

}  // namespace
}  // namespace mobilellm
