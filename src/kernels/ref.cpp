// The "ref" kernel table: scalar, portable, the specification every other table is tested against.
#include "mobilellm/kernels/ref.h"
#include "mobilellm/kernels.h"

namespace mobilellm {

extern const KernelTable kRefKernels = {
    "ref",
    "",
    [](const CpuFeatures&) { return true; },
    {ref::Matmul<DType::kF32>, ref::Matmul<DType::kF16>, ref::Matmul<DType::kBF16>,
     ref::Matmul<DType::kQ8_0>, ref::Matmul<DType::kQ4_0>},
    {ref::RowToF32<DType::kF32>, ref::RowToF32<DType::kF16>, ref::RowToF32<DType::kBF16>,
     ref::RowToF32<DType::kQ8_0>, ref::RowToF32<DType::kQ4_0>},
    ref::QuantizeQ8,
    ref::RmsNorm,
    ref::Softmax,
    ref::SiluMul,
    ref::Add,
    ref::Dot,
    ref::Axpy,
    {ref::Attend<DType::kF32>, ref::Attend<DType::kF16>},
    ref::Rope,
    ref::ToF16,
};

}  // namespace mobilellm
