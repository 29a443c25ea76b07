// Fuzzes the session-file reader behind Session::Load: any bytes as a session file for a tiny model
// must load or give one error naming the file, leaving the session usable: no crash, no sanitizer
// report, no read outside the input. A file that loads is decoded from (one more token).
//
// Input: the file's bytes. The model is the tiny f16 fixture of fuzz_model_file's corpus; the
// seeds (corpus/fuzz_session_file/) are sessions saved with it, of 0, 1, 5 and 17 tokens.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "mobilellm/mobilellm.h"

#ifndef MOBILELLM_FUZZ_MODEL
#define MOBILELLM_FUZZ_MODEL "tests/fuzz/corpus/fuzz_model_file/tiny-f16-panels.mlm"
#endif

namespace {

struct State {
  std::shared_ptr<const mobilellm::Model> model;
  std::unique_ptr<mobilellm::Session> session;
  std::string path;
};

State& Get() {
  static State* state = [] {
    auto* s = new State;
    auto model = mobilellm::Model::Load(MOBILELLM_FUZZ_MODEL);
    if (!model.ok()) {
      std::fprintf(stderr, "fuzz_session_file: %s\n", model.status().message().c_str());
      std::abort();
    }
    s->model = *model;
    mobilellm::SessionOptions o;
    o.n_ctx = 64;
    o.n_threads = 1;
    s->session = std::move(mobilellm::Session::Create(s->model, o)).value();
    char dir[] = "/tmp/fuzz_session_file-XXXXXX";
    if (::mkdtemp(dir) == nullptr) std::abort();
    s->path = std::string(dir) + "/session";
    return s;
  }();
  return *state;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  State& s = Get();
  std::FILE* f = std::fopen(s.path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  const int before = s.session->pos();
  const mobilellm::Status st = s.session->Load(s.path);
  if (!st.ok()) {
    if (s.session->pos() != before) std::abort();  // a refused file changes nothing
    if (st.message().rfind(s.path + ": ", 0) != 0) std::abort();
    return 0;
  }
  if (s.session->logits() != nullptr) std::abort();  // none until a token is evaluated
  if (s.session->pos() < s.session->n_ctx()) {
    const int id = 1;
    if (!s.session->Evaluate(&id, 1).ok()) std::abort();
  }
  s.session->Reset();
  return 0;
}
