// The "avxvnni" kernel table: AVX-VNNI (VEX vpdpbusd on ymm) for quantized weights in the panel
// layout, the AVX2 bodies for everything else. The only translation unit built with -mavxvnni.
#include "mobilellm/kernels/avxvnni.h"

namespace mobilellm {

extern const KernelTable kAvxVnniKernels = avx2::MakeTable(
    "avxvnni", "avx2 fma f16c avxvnni",
    [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c && f.avxvnni; },
    avxvnni::MatmulQ<DType::kQ8_0>, avxvnni::MatmulQ<DType::kQ4_0>);

}  // namespace mobilellm
