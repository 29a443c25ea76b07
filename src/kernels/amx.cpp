// The "amx" kernel table: AMX-INT8 tiles for quantized prefill, the AVX-512 VNNI kernels for decode
// and attention, the AVX2 bodies for everything else. The only translation unit built with AMX
// flags.
#include "mobilellm/kernels/amx.h"

namespace mobilellm {

extern const KernelTable kAmxKernels = avx2::MakeTable(
    "amx", MOBILELLM_AVX512VNNI_REQUIRES " amx-int8",
    [](const CpuFeatures& f) { return avx512::Supported(f) && f.amx_int8; },
    amx::MatmulQ<DType::kQ8_0>, amx::MatmulQ<DType::kQ4_0>, avx512::Attend<DType::kF32>,
    avx512::Attend<DType::kF16>);

}  // namespace mobilellm
