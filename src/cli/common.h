// What the subcommands share: one error line, loading a model, the sampling flags, the cancel flag
// a SIGINT handler sets. Definitions in main.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <memory>
#include <string>

#include "mobilellm/mobilellm.h"

namespace mobilellm::cli {

// Prints "mobilellm: error: MESSAGE" and returns 1.
int Fail(const std::string& message);

// Model::Load with the CLI's SIGBUS guard; an empty path is the bundled demo model.
Result<std::shared_ptr<const Model>> LoadModel(std::string path, bool preload, bool verbose);

// Set by the SIGINT handler of generate and chat; Generate checks it before every token.
extern std::atomic<bool> g_cancel;

// The sampling flags of generate and chat (--temp, --top-k, --top-p, --min-p, --repeat-penalty,
// --repeat-last-n, --seed), with generate's defaults.
struct SamplingFlags {
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.1f;
  int top_k = 40, repeat_last_n = 64;
  int64_t seed = -1;  // -1: random
};
void AddSamplingFlags(CLI::App* app, SamplingFlags& flags);
SamplerOptions ToSamplerOptions(const SamplingFlags& flags);

}  // namespace mobilellm::cli
