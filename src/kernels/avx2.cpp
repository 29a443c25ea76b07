// The "avx2" kernel table. The only translation unit built with -mavx2 -mfma -mf16c.
#include "mobilellm/kernels/avx2.h"

#include "mobilellm/kernels.h"

namespace mobilellm {

extern const KernelTable kAvx2Kernels = {
    "avx2",
    "avx2 fma f16c",
    [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; },
    {avx2::Matmul<DType::kF32>, avx2::Matmul<DType::kF16>, avx2::Matmul<DType::kBF16>,
     avx2::MatmulQ<DType::kQ8_0>, avx2::MatmulQ<DType::kQ4_0>},
    {avx2::RowToF32<DType::kF32>, avx2::RowToF32<DType::kF16>, avx2::RowToF32<DType::kBF16>,
     avx2::RowToF32<DType::kQ8_0>, avx2::RowToF32<DType::kQ4_0>},
    avx2::QuantizeQ8,
    avx2::RmsNorm,
    avx2::Softmax,
    avx2::SiluMul,
    avx2::Add,
    avx2::Dot,
    avx2::Axpy,
    {avx2::Attend<DType::kF32>, avx2::Attend<DType::kF16>},
    avx2::Rope,
};

}  // namespace mobilellm
