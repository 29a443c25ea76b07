// The "neon" kernel table: base AArch64 (armv8-a), every 64-bit ARM CPU.
#include "mobilellm/kernels/neon.h"

namespace mobilellm {

extern const KernelTable kNeonKernels =
    neon::MakeTable("neon", "neon", [](const CpuFeatures& f) { return f.neon; });

}  // namespace mobilellm
