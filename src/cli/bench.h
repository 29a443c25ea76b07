// `mobilellm bench`: load, time-to-first-token, prefill and decode speed, memory, per model and
// thread count. See bench.cpp.
#pragma once

#include <string>
#include <vector>

namespace mobilellm::cli {

struct BenchArgs {
  std::vector<std::string> models;
  std::vector<int> threads = {1};
  int n_prompt = 128, n_gen = 128, reps = 5;
  std::string output = "md";    // md | json | csv
  std::string kv_type = "f16";  // f16 | f32
  bool profile = false;         // time each phase of the decode steps (SessionOptions::profile)
};

int RunBench(const BenchArgs& args);

}  // namespace mobilellm::cli
