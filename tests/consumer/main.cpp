// consumer MODEL.mlm: greedy text after "It is a truth", through the public API only.
#include <cstdio>

#include "mobilellm/mobilellm.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer MODEL.mlm\n");
    return 2;
  }
  auto model = mobilellm::Model::Load(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().message().c_str());
    return 1;
  }
  mobilellm::SessionOptions so;
  so.n_threads = 1;
  auto session = mobilellm::Session::Create(*model, so);
  if (!session.ok()) {
    std::fprintf(stderr, "error: %s\n", session.status().message().c_str());
    return 1;
  }
  mobilellm::GenerateOptions go;
  go.max_tokens = 8;
  go.sampling.temperature = 0;
  auto out = mobilellm::Generate(**session, (*model)->Tokenize("It is a truth"), go,
                                 [](std::string_view, int) { return true; });
  if (!out.ok()) {
    std::fprintf(stderr, "error: %s\n", out.status().message().c_str());
    return 1;
  }
  std::printf("kernels %s, %zu tokens: It is a truth%s\n", (*model)->kernels().name,
              out->ids.size(), out->text.c_str());
  return 0;
}
