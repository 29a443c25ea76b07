// MobileLLM-R1 end to end on the real Llama-3 tokenizer: an R1-shaped checkpoint folder (Llama4
// text model with R1's 128,256-token vocabulary, BOS and EOS list; the real tokenizer.json and
// tokenizer_config.json) is converted, described by `info`, and generates. The prompt's ids must
// be Tokenizers.js's, the greedy ids PyTorch's, and the printed text Tokenizers.js's decode of
// them. The fixture is tests/bpe/r1_llama3.sh (ctest "r1_llama3_fixture").
#include <algorithm>
#include <string>
#include <vector>

#include "test_util.h"

namespace mobilellm {
namespace {

using testing::RunCommand;
using testing::TempDir;

const std::string kFixture = MOBILELLM_R1_LLAMA3_DIR;

TEST(R1Llama3, ConvertedCheckpointGeneratesAsPyTorchAndTokenizersJs) {
  if (!testing::FileExists(kFixture + "/stamp"))
    GTEST_SKIP() << "no fixture in " << kFixture << " (r1_llama3_fixture skipped: node missing)";
  const nlohmann::json golden = testing::ReadJson(kFixture + "/golden.json");
  const nlohmann::json decoded = testing::ReadJson(kFixture + "/decoded.json");
  const std::string prompt = testing::ReadAll(kFixture + "/prompt.txt");
  TempDir dir;
  const std::string mlm = dir / "r1.mlm";
  const auto c = RunCommand(testing::Convert() + " " + kFixture + "/hf --dtype f32 -q -o " + mlm);
  ASSERT_EQ(c.exit_code, 0) << c.err;

  const auto info = RunCommand(testing::Mobilellm() + " info " + mlm);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  for (const char* line :
       {"bos 128000, eos 128001, 128008, 128009, head tied to token_embd",
        "arch:        llama4_text (HF Llama4ForCausalLM, dense), QK-norm on (RoPE layers)",
        "tokenizer:   byte-level BPE (Llama-3 pre-tokenizer), 128256 tokens, 256 added (256 "
        "special)",
        "bos_token \"<|begin_of_text|>\", eos_token \"<|end_of_text|>\""})
    EXPECT_NE(info.out.find(line), std::string::npos) << line << "\n" << info.out;

  // The fixture's greedy ids stop at no EOS id (else generate would stop there).
  const std::vector<int> greedy = golden["greedy_ids"];
  for (int eos : golden["eos_ids"]) ASSERT_EQ(std::count(greedy.begin(), greedy.end(), eos), 0);
  const std::string gen = testing::Mobilellm() + " generate -m " + mlm + " -f " + kFixture +
                          "/prompt.txt --temp 0 -n " + std::to_string(greedy.size()) + " -t 2";
  const auto j = RunCommand(gen + " --json");
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const nlohmann::json out = nlohmann::json::parse(j.out);
  EXPECT_EQ(out["prompt_ids"], golden["prompt_ids"]);  // Tokenizers.js's, BOS first
  EXPECT_EQ(out["ids"], golden["greedy_ids"]);         // PyTorch's
  EXPECT_EQ(out["text"], decoded["text"]);             // Tokenizers.js's decode of them
  // Streamed: the prompt, then the same text (no partial UTF-8 sequence ever split it).
  const auto t = RunCommand(gen);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_EQ(t.out, prompt + decoded["text"].get<std::string>() + "\n");
}

}  // namespace
}  // namespace mobilellm
