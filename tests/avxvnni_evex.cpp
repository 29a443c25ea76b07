// Test twin of the "avxvnni" table: the same source (kernels/avxvnni.h) built with -mavx512vl
// -mavx512vnni, where vpdpbusd on ymm is EVEX-encoded, so the kernels run and are checked against
// the reference on CPUs (and emulators: QEMU 7.2 has no AVX-VNNI) that have AVX-512 VNNI but not
// AVX-VNNI. Same instruction, same results; only the encoding differs. Never in the engine.
#include "mobilellm/kernels/avxvnni.h"

namespace mobilellm {

extern const KernelTable kAvxVnniEvexTwin = avx2::MakeTable(
    "avxvnni_evex_twin", "avx2 fma f16c avx512vl avx512vnni",
    [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c && f.avx512vl && f.avx512vnni; },
    avxvnni::MatmulQ<DType::kQ8_0>, avxvnni::MatmulQ<DType::kQ4_0>);

}  // namespace mobilellm
