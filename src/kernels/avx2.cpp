// The "avx2" kernel table (kernels/avx2.h: avx2::kTable). The only translation unit built with
// -mavx2 -mfma -mf16c.
#include "mobilellm/kernels/avx2.h"

namespace mobilellm {

extern const KernelTable kAvx2Kernels = avx2::kTable;

}  // namespace mobilellm
