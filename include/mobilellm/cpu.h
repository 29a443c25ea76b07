// CpuFeatures: what the running CPU can execute, probed once.
#pragma once

#include <string>

namespace mobilellm {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avxvnni = false;
  bool amx_int8 = false;  // AMX-TILE + AMX-INT8, enabled by the OS and granted to this process
  bool neon = false, dotprod = false, i8mm = false;

  static const CpuFeatures& Get();  // probed on first call; thread-safe
  std::string ToString() const;     // e.g. "avx2 fma f16c avx512f ..."
};

}  // namespace mobilellm
