// Test twin of the "amx" table: the same source (kernels/amx.h) with the tile instructions run by
// a scalar model of them (MOBILELLM_AMX_EMULATE), so the AMX kernel's tiling, q4_0 unpacking,
// tails and scales are checked against the reference on CPUs without AMX (QEMU 7.2 has none
// either). The tile multiply itself runs for real only on AMX CPUs, where the "amx" table's own
// tests check it. Never in the engine; too slow to time.
#define MOBILELLM_AMX_EMULATE
#include "mobilellm/kernels/amx.h"

namespace mobilellm {

extern const KernelTable kAmxEmulatedTwin =
    avx2::MakeTable("amx_emulated_twin", MOBILELLM_AVX512VNNI_REQUIRES, avx512::Supported,
                    amx::MatmulQ<DType::kQ8_0>, amx::MatmulQ<DType::kQ4_0>,
                    avx512::Attend<DType::kF32>, avx512::Attend<DType::kF16>);

}  // namespace mobilellm
