// The SentencePiece library itself (libsentencepiece, C++) judges the runtime tokenizer: the same
// ids and the same decoded text on the converter's built-in corpus and on real text, for the test
// tokenizer, the demo model's and the LLaMA 32k one when ../shared has it; and the converter
// refuses, by name, models the runtime cannot reproduce (made here with spm_train).
// Built only where the converter is (the library present: never in cross builds for phones).
#include "mobilellm/model_file.h"
#include "spm_check.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::RunCommand;
using testing::TempDir;

std::string DemoTokenizer() {
  auto f = ModelFile::Open(std::string(MOBILELLM_SOURCE_DIR) + "/models/demo-austen.mlm");
  EXPECT_TRUE(f.ok()) << f.status().message();
  return std::string((*f)->Bytes(*(*f)->Find(format::kTokenizerTensor)));
}

// Every line and every 200-byte window of a text through both tokenizers.
void ExpectSameOnText(const convert::SpmJudge& judge, const std::string& text) {
  int checked = 0;
  for (size_t at = 0; at < text.size(); at += 200, ++checked) {
    const std::string diff = judge.Compare(text.substr(at, 200));
    ASSERT_EQ(diff, "");
  }
  for (size_t at = 0, end; at < text.size(); at = end + 1, ++checked) {
    end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    ASSERT_EQ(judge.Compare(text.substr(at, end - at)), "");
  }
  EXPECT_GT(checked, 10);
}

TEST(SentencePieceLibrary, RuntimeTokenizerMatchesItOnTheCorpusAndRealText) {
  std::vector<std::pair<std::string, std::string>> models = {
      {"fixture tiny.model", testing::ReadAll(testing::FixturesDir() + "/tiny.model")},
      {"demo-austen.mlm's tokenizer", DemoTokenizer()}};
  const std::string llama = testing::SharedDir() + "/tokenizers/llama-32k.model";
  if (testing::FileExists(llama)) models.push_back({"llama-32k.model", testing::ReadAll(llama)});
  const std::string text =
      testing::ReadAll(std::string(MOBILELLM_SOURCE_DIR) + "/tests/testdata/corpus.txt") +
      testing::ReadAll(std::string(MOBILELLM_SOURCE_DIR) + "/models/demo-heldout.txt")
          .substr(0, 20000);
  for (const auto& [name, bytes] : models) {
    SCOPED_TRACE(name);
    ASSERT_FALSE(bytes.empty());
    const Status s = convert::CheckWithSentencePiece(bytes, name);
    ASSERT_TRUE(s.ok()) << s.message();
    auto judge = convert::SpmJudge::Load(bytes, name);
    ASSERT_TRUE(judge.ok()) << judge.status().message();
    EXPECT_GT((*judge)->Corpus().size(), 30u);
    ExpectSameOnText(**judge, text);
  }
}

// spm_train (Debian's sentencepiece) makes a model of `type` with `normalizer` from the test
// corpus.
std::string Train(const TempDir& dir, const std::string& type, const std::string& normalizer) {
  const std::string prefix = dir / (type + "-" + normalizer);
  const auto r = RunCommand("spm_train --input=" + std::string(MOBILELLM_SOURCE_DIR) +
                            "/tests/testdata/corpus.txt --model_prefix=" + prefix +
                            " --model_type=" + type + " --vocab_size=360 --hard_vocab_limit=false" +
                            " --character_coverage=0.99 --byte_fallback=true" +
                            " --normalization_rule_name=" + normalizer);
  EXPECT_EQ(r.exit_code, 0) << "spm_train (Debian package sentencepiece): " << r.err;
  return prefix + ".model";
}

// A checkpoint directory like fixture `name`'s, with `tokenizer` as its tokenizer.model.
std::string CheckpointWith(const TempDir& dir, const std::string& tokenizer) {
  const std::string hf = dir / "hf", from = testing::FixturesDir() + "/ls-lmhead-bin-bf16/hf";
  EXPECT_EQ(RunCommand("mkdir -p " + hf + " && cp " + from + "/config.json " + from +
                       "/pytorch_model.bin " + hf + "/ && cp " + tokenizer + " " + hf +
                       "/tokenizer.model")
                .exit_code,
            0);
  return hf;
}

TEST(SentencePieceLibrary, ConverterRefusesWhatTheRuntimeCannotReproduceByName) {
  TempDir dir;
  struct Case {
    std::string type, normalizer, message;
  };
  for (const Case& c : {Case{"unigram", "identity", "cannot reproduce a Unigram model"},
                        Case{"bpe", "nmt_nfkc", "cannot reproduce the normalizer 'nmt_nfkc'"}}) {
    SCOPED_TRACE(c.type + " " + c.normalizer);
    const std::string model = Train(dir, c.type, c.normalizer);
    const std::string hf = CheckpointWith(dir, model);
    const auto r = RunCommand(testing::Convert() + " " + hf + " -o " + dir / "out.mlm" + " -q");
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(testing::FileExists(dir / "out.mlm"));
  }
  // The same corpus as an identity BPE model converts: the judge passes what the runtime can do.
  const std::string hf = CheckpointWith(dir, Train(dir, "bpe", "identity"));
  const auto ok = RunCommand(testing::Convert() + " " + hf + " -o " + dir / "bpe.mlm" + " -q");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

}  // namespace
}  // namespace mobilellm
