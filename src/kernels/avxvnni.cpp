// The "avxvnni" kernel table: AVX-VNNI (VEX vpdpbusd on ymm) for quantized weights in the panel
// layout, the AVX2 bodies for everything else. The only translation unit built with -mavxvnni.
#include "mobilellm/kernels/avxvnni.h"

namespace mobilellm {

extern const KernelTable kAvxVnniKernels = [] {
  KernelTable t = avx2::kTable;
  t.name = "avxvnni";
  t.features = "avx2 fma f16c avxvnni";
  t.supported = [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c && f.avxvnni; };
  t.matmuls = avxvnni::kTableMatmuls;
  t.attends = avxvnni::kTableAttends;
  return t;
}();

}  // namespace mobilellm
