// The "avx2" kernel table. The only translation unit built with -mavx2 -mfma -mf16c.
#include "mobilellm/kernels/avx2.h"

namespace mobilellm {

extern const KernelTable kAvx2Kernels = avx2::MakeTable(
    "avx2", "avx2 fma f16c", [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; });

}  // namespace mobilellm
