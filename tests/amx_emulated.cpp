// Test twin of the "amx" table: the same source (kernels/amx.h) with the tile instructions run by
// a scalar model of them (MOBILELLM_AMX_EMULATE), so the AMX kernel's tiling, q4_0 unpacking,
// tails and scales are checked against the reference on CPUs without AMX (QEMU 7.2 has none
// either). The tile multiply itself runs for real only on AMX CPUs, where the "amx" table's own
// tests check it. Never in the engine; too slow to time.
#define MOBILELLM_AMX_EMULATE
#include "mobilellm/kernels/amx.h"

namespace mobilellm {

extern const KernelTable kAmxEmulatedTwin = [] {
  KernelTable t = avx2::kTable;
  t.name = "amx_emulated_twin";
  t.features = MOBILELLM_AVX512VNNI_FEATURES;
  t.supported = avx512::Supported;
  t.matmuls = amx::kTableMatmuls;
  t.attends = amx::kTableAttends;
  return t;
}();

}  // namespace mobilellm
