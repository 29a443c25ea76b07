// Shared helpers for the test suite: fixture paths, running the binaries, temp dirs, JSON.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "mobilellm/model_file.h"

namespace mobilellm::testing {

// Written by `tools/reference.py fixtures` (the ctest fixture "reference_fixtures").
inline std::string FixturesDir() {
  return MOBILELLM_FIXTURES_DIR;
}
// Written by `tools/tokenizer_reference.py` (the ctest fixture "tokenizer_fixtures").
inline std::string TokenizerFixturesDir() {
  return MOBILELLM_TOKENIZER_FIXTURES_DIR;
}
inline std::string BinDir() {
  return MOBILELLM_BIN_DIR;
}
inline std::string SharedDir() {
  return MOBILELLM_SHARED_DIR;
}

inline bool FileExists(const std::string& p) {
  return ::access(p.c_str(), F_OK) == 0;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

inline nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(ReadAll(path));
}

// A fresh directory under the build tree, removed at destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mobilellm-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes a minimal model around a tokenizer (the weights, all zero, are irrelevant) to `path`;
// fails the test on error.
inline void WriteTokenizerModel(const std::string& path, const std::string& tokenizer,
                                format::TokenizerKind kind, int vocab, int bos = 1) {
  ModelConfig c;
  c.vocab_size = vocab, c.dim = 4, c.ffn_dim = 4, c.n_blocks = 1, c.n_heads = 1, c.n_kv_heads = 1,
  c.head_dim = 4, c.n_ctx = 16, c.bos_id = bos, c.eos_id = bos, c.tokenizer_kind = kind;
  ModelWriter w(c, "test");
  for (const TensorSpec& s : ExpectedTensors(c)) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    w.Add(s.name, DType::kF32, s.shape, [n](uint8_t* dst) {
      std::memset(dst, 0, size_t(n) * 4);
      return Status();
    });
  }
  w.Add(format::kTokenizerTensor, DType::kU8, {int64_t(tokenizer.size())},
        [&tokenizer](uint8_t* dst) {
          std::memcpy(dst, tokenizer.data(), tokenizer.size());
          return Status();
        });
  const Status s = w.Write(path, true);
  EXPECT_TRUE(s.ok()) << s.message();
}

struct CommandResult {
  int exit_code;
  std::string out, err;
};

// Runs a shell command line; captures stdout and stderr separately.
inline CommandResult RunCommand(const std::string& cmd) {
  TempDir tmp;
  const std::string out = tmp / "out", err = tmp / "err";
  const int status =
      std::system(("(" + cmd + ") >'" + out + "' 2>'" + err + "' </dev/null").c_str());
  return {WEXITSTATUS(status), ReadAll(out), ReadAll(err)};
}

// How to start a binary of this build: directly, or through the emulator of a cross build
// (qemu-aarch64 ...) when the tests themselves run under it.
inline std::string Emulator() {
#if defined(MOBILELLM_EMULATOR)
  return MOBILELLM_EMULATOR " ";
#else
  return "";
#endif
}
inline bool Emulated() {
  return !Emulator().empty();
}
inline std::string Mobilellm() {
  return Emulator() + BinDir() + "/mobilellm";
}
// The converter: this build's, or the host's where a cross build has none (tests/CMakeLists.txt).
inline std::string Convert() {
#if defined(MOBILELLM_CONVERTER)
  return MOBILELLM_CONVERTER;
#else
  return Emulator() + BinDir() + "/mobilellm-convert";
#endif
}

// Fixture case `name`'s HF checkpoint directory.
inline std::string Hf(const std::string& name) {
  return FixturesDir() + "/" + name + "/hf";
}

// Converts fixture case `name` to `out` at `dtype`; fails the test on error.
inline void ConvertCase(const std::string& name, const std::string& dtype, const std::string& out) {
  const CommandResult r = RunCommand(Convert() + " " + FixturesDir() + "/" + name + "/hf -o " +
                                     out + " --dtype " + dtype + " -q --force");
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace mobilellm::testing
