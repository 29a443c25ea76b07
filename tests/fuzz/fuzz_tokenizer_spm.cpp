// Differential fuzzing of the runtime tokenizer against the SentencePiece library: any bytes,
// tokenized by both with a real model, must give the same ids, and those ids the same decoded
// text. The first input byte picks the model: the test fixtures' BPE model and the demo model's
// (the committed seeds of fuzz_tokenizer), and the LLaMA 32k model when ../shared has it.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "spm_check.h"

namespace {

std::vector<std::unique_ptr<mobilellm::convert::SpmJudge>>* g_judges;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_judges = new std::vector<std::unique_ptr<mobilellm::convert::SpmJudge>>();
  const std::string src = MOBILELLM_SOURCE_DIR;
  const char* shared = std::getenv("MOBILELLM_SHARED");
  for (const std::string& path :
       {src + "/tests/fuzz/corpus/fuzz_tokenizer/fixture-bpe.model",
        src + "/tests/fuzz/corpus/fuzz_tokenizer/demo-austen.model",
        (shared ? std::string(shared) : src + "/../shared") + "/tokenizers/llama-32k.model"}) {
    const std::string bytes = ReadAll(path);
    if (bytes.empty()) continue;
    auto judge = mobilellm::convert::SpmJudge::Load(bytes, path);
    if (!judge.ok()) {
      std::fprintf(stderr, "fuzz_tokenizer_spm: %s\n", judge.status().message().c_str());
      std::abort();
    }
    g_judges->push_back(std::move(*judge));
  }
  if (g_judges->empty()) std::abort();
  std::fprintf(stderr, "fuzz_tokenizer_spm: %zu models\n", g_judges->size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& judge = *(*g_judges)[data[0] % g_judges->size()];
  const std::string diff =
      judge.Compare(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  if (!diff.empty()) {
    std::fprintf(stderr, "fuzz_tokenizer_spm: model %d: %s\n", int(data[0] % g_judges->size()),
                 diff.c_str());
    std::abort();
  }
  return 0;
}
