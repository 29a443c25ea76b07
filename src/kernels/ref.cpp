// The "ref" kernel table: scalar, portable, the specification every other table is tested against.
#include "mobilellm/kernels/ref.h"
#include "mobilellm/kernels.h"

namespace mobilellm {

extern const KernelTable kRefKernels = {
    .name = "ref",
    .features = "",
    .supported = [](const CpuFeatures&) { return true; },
    .matmuls = ref::kMatmuls,
    .attends = ref::kAttends,
    .row_to_f32 = ref::kRowToF32,
    .quantize_q8 = ref::QuantizeQ8,
    .rmsnorm = ref::RmsNorm,
    .silu_mul = ref::SiluMul,
    .add = ref::Add,
    .rope = ref::Rope,
    .to_f16 = ref::ToF16,
};

}  // namespace mobilellm
