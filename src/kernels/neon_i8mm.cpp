// The "neon_i8mm" kernel table: dotprod for decode, the int8 matrix multiply (SMMLA) for prefill.
// Built with +dotprod+i8mm (Cortex-A510/A710/X2 and later, Apple M2 and later).
#include "mobilellm/kernels/neon.h"

#if !defined(__ARM_FEATURE_DOTPROD) || !defined(__ARM_FEATURE_MATMUL_INT8)
#error "neon_i8mm.cpp needs -march=armv8.2-a+dotprod+i8mm"
#endif

namespace mobilellm {

extern const KernelTable kNeonI8mmKernels =
    neon::MakeTable("neon_i8mm", "dotprod i8mm",
                    [](const CpuFeatures& f) { return f.neon && f.dotprod && f.i8mm; });

}  // namespace mobilellm
