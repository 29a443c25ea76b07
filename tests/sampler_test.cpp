// Sampler: greedy is argmax, filters keep what they promise, seeds reproduce, and the sampling
// frequencies follow the softmax.
#include <cmath>
#include <map>

#include "mobilellm/mobilellm.h"
#include "test_util.h"

namespace mobilellm {
namespace {

TEST(Sampler, GreedyIsArgmax) {
  SamplerOptions o;
  o.temperature = 0;
  Sampler s(o);
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.Sample(logits.data(), 4, {}), 1);
}

TEST(Sampler, RepeatPenaltyDemotesRecentTokens) {
  SamplerOptions o;
  o.temperature = 0;
  o.repeat_penalty = 1.5f;
  Sampler s(o);
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.Sample(logits.data(), 4, {1}), 3);  // 2.0 / 1.5 < 1.9
  o.repeat_last_n = 1;
  Sampler s2(o);
  EXPECT_EQ(s2.Sample(logits.data(), 4, {1, 0}), 1) << "token 1 is outside the window";
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  SamplerOptions o;
  o.temperature = 5.0f, o.top_k = 1;
  Sampler s(o);
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits.data(), 4, {}), 1);
}

std::map<int, int> Histogram(SamplerOptions o, const std::vector<float>& logits, int n) {
  Sampler s(o);
  std::map<int, int> h;
  for (int i = 0; i < n; ++i) h[s.Sample(logits.data(), int(logits.size()), {})]++;
  return h;
}

TEST(Sampler, SeedReproducesAndFrequenciesFollowSoftmax) {
  SamplerOptions o;
  o.temperature = 1.0f, o.top_k = 0, o.top_p = 1.0f, o.min_p = 0.0f, o.seed = 42;
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -1.0f};
  const auto a = Histogram(o, logits, 20000), b = Histogram(o, logits, 20000);
  EXPECT_EQ(a, b);
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int i = 0; i < 4; ++i) {
    const double p = std::exp(logits[i]) / z, got = a.count(i) ? a.at(i) / 20000.0 : 0;
    EXPECT_NEAR(got, p, 4 * std::sqrt(p * (1 - p) / 20000))
        << "token " << i;  // 4 sigma, fixed seed
  }
  o.seed = 43;
  EXPECT_NE(Histogram(o, logits, 20000), a);
}

TEST(Sampler, TopPAndMinPDropTheTail) {
  SamplerOptions o;
  o.temperature = 1.0f, o.top_k = 0, o.min_p = 0.0f, o.top_p = 0.5f, o.seed = 1;
  const std::vector<float> logits = {3.0f, 0.0f, 0.0f, 0.0f, 0.0f};  // p(0) ~ 0.83
  EXPECT_EQ(Histogram(o, logits, 500).size(), 1u) << "top-p 0.5 keeps only the best token";
  o.top_p = 1.0f, o.min_p = 0.1f;  // p(others) ~ 0.04 < 0.1 * 0.83
  EXPECT_EQ(Histogram(o, logits, 500).size(), 1u);
  o.min_p = 0.01f;
  EXPECT_EQ(Histogram(o, logits, 2000).size(), 5u);
}

}  // namespace
}  // namespace mobilellm
