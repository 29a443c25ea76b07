// The "neon_dotprod" kernel table. The only translation unit built with +dotprod (SDOT), so the
// rest of the binary runs on any armv8-a CPU (e.g. Cortex-A53) and this table is picked at run
// time where the CPU has it (Cortex-A55/A76 and later, Apple M1 and later).
#include "mobilellm/kernels/neon.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "neon_dotprod.cpp needs -march=armv8.2-a+dotprod"
#endif

namespace mobilellm {

extern const KernelTable kNeonDotprodKernels = neon::MakeTable(
    "neon_dotprod", "dotprod", [](const CpuFeatures& f) { return f.neon && f.dotprod; });

}  // namespace mobilellm
