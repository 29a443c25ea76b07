// Fuzzes the .mlm loader: any bytes must give a model or one error, never a crash or a read
// outside the mapping. Inputs are written to a memfd so the real mmap path runs.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "mobilellm/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz.mlm", 0);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
  auto file = mobilellm::ModelFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    // Touch every tensor the loader accepted, and run the checksums over them.
    uint64_t sum = 0;
    for (const auto* e : (*file)->entries()) {
      const std::string_view bytes = (*file)->Bytes(*e);
      for (char c : bytes) sum += uint8_t(c);
    }
    (void)(*file)->Verify();
    if (sum == 0xFFFFFFFFFFFFFFFFull) return 1;  // keep the loop
  }
  return 0;
}
