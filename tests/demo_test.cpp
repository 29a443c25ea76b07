// The bundled demo model (models/): the C++ engine reproduces what PyTorch computed when the
// model was trained (tools/demo/train.py wrote models/demo-golden.json from the same fp16 weights).
#include <cmath>
#include <fstream>

#include "test_util.h"

namespace mobilellm {
namespace {

using testing::RunCommand;

std::string Models() {
  return MOBILELLM_SOURCE_DIR "/models";
}

nlohmann::json LastLine(const std::string& out) {
  return nlohmann::json::parse(out.substr(out.rfind('\n', out.size() - 2) + 1));
}

class Demo : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::FileExists(Models() + "/demo-austen.mlm"))
      FAIL() << "models/demo-austen.mlm is missing";
    golden_ = testing::ReadJson(Models() + "/demo-golden.json");
  }
  nlohmann::json golden_;
};

TEST_F(Demo, GreedyGenerationEqualsPyTorch) {
  const std::string prompt = golden_["prompt"];
  const auto r =
      RunCommand(testing::Mobilellm() + " generate -m " + Models() +
                 "/demo-austen.mlm --temp 0 --repeat-penalty 1 -n " +
                 std::to_string(golden_["greedy_ids"].size()) + " --json -p '" + prompt + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = LastLine(r.out);
  EXPECT_EQ(j["prompt_ids"], golden_["prompt_ids"]);
  const auto& want = golden_["greedy_ids"];
  ASSERT_LE(j["ids"].size(), want.size());
  for (size_t i = 0; i < j["ids"].size(); ++i) EXPECT_EQ(j["ids"][i], want[i]) << "token " << i;
  if (j["stop_reason"] == "eos") {
    EXPECT_EQ(want[j["ids"].size()], 2) << "stopped at EOS where PyTorch did not emit one";
  } else {
    EXPECT_EQ(j["ids"].size(), want.size());
  }
}

TEST_F(Demo, HeldOutPerplexityWithinOnePercentOfPyTorch) {
  if (testing::Emulated())
    GTEST_SKIP() << "61,000 tokens take many minutes under an emulator; on this architecture the "
                    "greedy ids above and the Parity logits tests hold the engine to PyTorch";
  const auto r = RunCommand(testing::Mobilellm() + " perplexity -m " + Models() +
                            "/demo-austen.mlm -f " + Models() + "/demo-heldout.txt -c " +
                            std::to_string(golden_["heldout_ctx"].get<int>()) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = LastLine(r.out);
  EXPECT_EQ(j["tokens"], golden_["heldout_tokens"]);
  const double ours = j["perplexity"], torch = golden_["heldout_ppl"];
  std::printf("[demo] held-out perplexity: engine %.4f, PyTorch %.4f (%+.4f%%)\n", ours, torch,
              100 * (ours / torch - 1));
  EXPECT_NEAR(ours / torch, 1.0, 0.01);
}

// The quality bounds of quantization, on a trained model: the shipped f16 weights re-encoded by
// the converter as q8_0 and q4_0 (panels), perplexity on the first 20,000 characters of the
// held-out text against the f16 model's: q8_0 within 1%, q4_0 within 10%.
TEST_F(Demo, QuantizedPerplexityWithinBounds) {
  if (testing::Emulated()) GTEST_SKIP() << "three perplexity runs take minutes under an emulator";
  testing::TempDir dir;
  const std::string text = testing::ReadAll(Models() + "/demo-heldout.txt").substr(0, 20000);
  { std::ofstream(dir / "text.txt") << text; }
  const auto ppl = [&](const std::string& model) {
    const auto r = RunCommand(testing::Mobilellm() + " perplexity -m " + model + " -f " +
                              dir / "text.txt" + " -c 256 --json");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? LastLine(r.out)["perplexity"].get<double>() : 0.0;
  };
  const double f16 = ppl(Models() + "/demo-austen.mlm");
  for (const auto& [dtype, bound] :
       {std::pair<const char*, double>{"q8_0", 0.01}, {"q4_0", 0.10}}) {
    const std::string out = dir / (std::string(dtype) + ".mlm");
    const auto c = RunCommand(testing::Convert() + " " + Models() + "/demo-austen.mlm -q --dtype " +
                              dtype + " -o " + out);
    ASSERT_EQ(c.exit_code, 0) << c.err;
    const double q = ppl(out);
    std::printf("[demo] perplexity on 20k held-out chars: f16 %.4f, %s %.4f (%+.2f%%)\n", f16,
                dtype, q, 100 * (q / f16 - 1));
    EXPECT_LT(std::fabs(q / f16 - 1), bound) << dtype;
  }
  // A quantized source is refused: quantizing twice would compound the rounding.
  const auto again = RunCommand(testing::Convert() + " " + dir / "q8_0.mlm -q --dtype q4_0 -o " +
                                dir / "twice.mlm");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("is already q8_0"), std::string::npos) << again.err;
  EXPECT_FALSE(testing::FileExists(dir / "twice.mlm"));
}

TEST_F(Demo, GenerateWithoutModelUsesTheBundledDemo) {
  const auto r = RunCommand(testing::Mobilellm() + " generate -p 'Elizabeth' -n 8 --seed 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Elizabeth", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), std::string("Elizabeth\n").size());
}

}  // namespace
}  // namespace mobilellm
