// The "avx512vnni" kernel table: AVX-512 VNNI integer dot products for quantized weights, zmm
// grouped-query attention, the AVX2 bodies for everything else. The only translation unit built
// with AVX-512 flags.
#include "mobilellm/kernels/avx512.h"

namespace mobilellm {

extern const KernelTable kAvx512VnniKernels = [] {
  KernelTable t = avx2::kTable;
  t.name = "avx512vnni";
  t.features = MOBILELLM_AVX512VNNI_FEATURES;
  t.supported = avx512::Supported;
  t.matmuls = avx512::kTableMatmuls;
  t.attends = avx512::kTableAttends;
  return t;
}();

}  // namespace mobilellm
