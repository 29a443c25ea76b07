// The "amx" kernel table: AMX-INT8 tiles for quantized prefill, the AVX-512 VNNI kernels for decode
// and attention, the AVX2 bodies for everything else. The only translation unit built with AMX
// flags.
#include "mobilellm/kernels/amx.h"

namespace mobilellm {

extern const KernelTable kAmxKernels = [] {
  KernelTable t = avx2::kTable;
  t.name = "amx";
  t.features = MOBILELLM_AVX512VNNI_FEATURES " amx-int8";
  t.supported = [](const CpuFeatures& f) { return avx512::Supported(f) && f.amx_int8; };
  t.matmuls = amx::kTableMatmuls;
  t.attends = amx::kTableAttends;
  return t;
}();

}  // namespace mobilellm
