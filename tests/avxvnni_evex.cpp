// Test twin of the "avxvnni" table: the same source (kernels/avxvnni.h) built with -mavx512vl
// -mavx512vnni, where vpdpbusd on ymm is EVEX-encoded, so the kernels run and are checked against
// the reference on CPUs (and emulators: QEMU 7.2 has no AVX-VNNI) that have AVX-512 VNNI but not
// AVX-VNNI. Same instruction, same results; only the encoding differs. Never in the engine.
#include "mobilellm/kernels/avxvnni.h"

namespace mobilellm {

extern const KernelTable kAvxVnniEvexTwin = [] {
  KernelTable t = avx2::kTable;
  t.name = "avxvnni_evex_twin";
  t.features = "avx2 fma f16c avx512vl avx512vnni";
  t.supported = [](const CpuFeatures& f) {
    return f.avx2 && f.fma && f.f16c && f.avx512vl && f.avx512vnni;
  };
  t.matmuls = avxvnni::kTableMatmuls;
  t.attends = avxvnni::kTableAttends;
  return t;
}();

}  // namespace mobilellm
