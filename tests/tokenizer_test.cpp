// Tokenizer parity with Python SentencePiece (goldens from tools/reference.py), on the tiny test
// tokenizer and on the real LLaMA 32k tokenizer MobileLLM uses when ../shared has it.
#include <cstring>

#include "mobilellm/mobilellm.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::TempDir;

// A minimal model around a tokenizer: the weights are irrelevant here.
std::shared_ptr<const Model> ModelWithTokenizer(const TempDir& dir, const std::string& spm,
                                                int vocab) {
  testing::WriteTokenizerModel(dir / "tok.mlm", spm, format::TokenizerKind::kSentencePiece, vocab);
  auto m = Model::Load(dir / "tok.mlm");
  EXPECT_TRUE(m.ok()) << m.status().message();
  return *m;
}

void CheckParity(const std::string& name) {
  const auto golden = testing::ReadJson(testing::TokenizerFixturesDir() + "/tokenizer_golden.json");
  if (!golden.contains(name)) GTEST_SKIP() << "no goldens for " << name;
  const std::string path = golden[name]["model"];
  if (!testing::FileExists(path)) GTEST_SKIP() << path << " is absent";
  TempDir dir;
  auto model = ModelWithTokenizer(dir, testing::ReadAll(path), name == "tiny" ? 400 : 32000);
  ASSERT_TRUE(model);
  int n = 0;
  for (const auto& c : golden[name]["cases"]) {
    const std::string text = c["text"];
    std::vector<int> want = {1};
    for (int id : c["ids"]) want.push_back(id);
    EXPECT_EQ(model->Tokenize(text), want) << "'" << text << "'";
    EXPECT_EQ(model->Tokenize(text, false), std::vector<int>(want.begin() + 1, want.end()));
    EXPECT_EQ(model->Detokenize(want), c["decoded"].get<std::string>()) << "'" << text << "'";
    // Streaming: TokenBytes after BOS equals Decode, except that Decode drops the dummy-prefix
    // space.
    std::string streamed;
    for (int id : want) streamed += model->TokenBytes(id);
    if (!streamed.empty() && streamed[0] == ' ') streamed.erase(0, 1);
    EXPECT_EQ(streamed, c["decoded"].get<std::string>()) << "'" << text << "'";
    ++n;
  }
  EXPECT_GT(n, 10);
}

TEST(Tokenizer, TinyMatchesPythonSentencePiece) {
  CheckParity("tiny");
}
TEST(Tokenizer, Llama32kMatchesPythonSentencePiece) {
  CheckParity("llama-32k");
}

TEST(Tokenizer, LlamaSpecialIds) {
  const std::string path = testing::SharedDir() + "/tokenizers/llama-32k.model";
  if (!testing::FileExists(path))
    GTEST_SKIP() << path << " is absent (it lives in ../shared, never in the repo)";
  TempDir dir;
  auto model = ModelWithTokenizer(dir, testing::ReadAll(path), 32000);
  ASSERT_TRUE(model);
  EXPECT_EQ(model->tokenizer_size(), 32000);
  EXPECT_EQ(model->TokenBytes(1), "");     // <s>
  EXPECT_EQ(model->TokenBytes(2), "");     // </s>
  EXPECT_EQ(model->TokenBytes(13), "\n");  // <0x0A>: byte fallback
  EXPECT_EQ(model->Tokenize("Hello")[0], 1);
}

// Not a model, a cut-off model, a model of a kind we do not implement: an error, never a crash.
TEST(Tokenizer, RejectsWhatItCannotRead) {
  EXPECT_FALSE(Tokenizer::Parse("").ok());
  EXPECT_FALSE(Tokenizer::Parse("GGUF\x03\x00\x00\x00 not a protobuf").ok());
  const auto golden = testing::ReadJson(testing::TokenizerFixturesDir() + "/tokenizer_golden.json");
  const std::string proto = testing::ReadAll(golden["tiny"]["model"].get<std::string>());
  ASSERT_TRUE(Tokenizer::Parse(proto).ok());
  for (size_t cut = 0; cut < proto.size(); cut += 97) {
    const auto t = Tokenizer::Parse(std::string_view(proto).substr(0, cut));
    if (t.ok()) t->Encode("a cut-off model still encodes \xFF safely");
  }
  const auto truncated = Tokenizer::Parse(std::string_view(proto).substr(0, proto.size() / 2));
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("malformed"), std::string::npos)
      << truncated.status().message();
}

}  // namespace
}  // namespace mobilellm
