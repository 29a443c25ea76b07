// The "avx512vnni" kernel table: AVX-512 VNNI integer dot products for quantized weights, zmm
// grouped-query attention, the AVX2 bodies for everything else. The only translation unit built
// with AVX-512 flags.
#include "mobilellm/kernels/avx512.h"

namespace mobilellm {

extern const KernelTable kAvx512VnniKernels = avx2::MakeTable(
    "avx512vnni", MOBILELLM_AVX512VNNI_REQUIRES, avx512::Supported, avx512::MatmulQ<DType::kQ8_0>,
    avx512::MatmulQ<DType::kQ4_0>, avx512::Attend<DType::kF32>, avx512::Attend<DType::kF16>);

}  // namespace mobilellm
