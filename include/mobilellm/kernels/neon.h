// AArch64 NEON kernels, by family in kernels/neon/, for three tables. Each table's translation unit
// compiles this with its own -march, and the feature macros pick the integer dot product:
//   neon          (armv8-a):                 vmull_s8 + vpadalq_s16, every AArch64 CPU;
//   neon_dotprod  (armv8.2-a+dotprod):       vdotq_s32, 16 multiply-adds per instruction;
//   neon_i8mm     (armv8.2-a+dotprod+i8mm):  vmmlaq_s32 for prefill (2 tokens x 2 rows per
//                                            instruction), vdotq_s32 for decode.
// That is for planar rows. Matrices in 16-row panels (what the converter writes) go through
// MatmulPanels: SDOT by element (vdotq_laneq_s32), or its vmull_s8 emulation; with i8mm, prefill
// unpacks each panel for SMMLA instead (MatmulPanelsMmla).
// This header lists the variants and makes the tables. Each function has its twin in ref.h; tests
// hold them together. Layouts as in kernels.h/format.h.
#pragma once

#include "mobilellm/kernels/neon/attention.h"
#include "mobilellm/kernels/neon/elementwise.h"
#include "mobilellm/kernels/neon/matmul_float.h"
#include "mobilellm/kernels/neon/matmul_panels.h"
#include "mobilellm/kernels/neon/matmul_q.h"

// The suffix of this TU's variant names (kernels.h): the instruction set it is built for.
#if defined(__ARM_FEATURE_MATMUL_INT8)
#define MOBILELLM_NEON_ISA "neon_i8mm"
#elif defined(__ARM_FEATURE_DOTPROD)
#define MOBILELLM_NEON_ISA "neon_dotprod"
#else
#define MOBILELLM_NEON_ISA "neon"
#endif

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// ---- the variants (kernels.h), in the order a table tries them ---------------------------------
// Each table's TU (neon, neon_dotprod, neon_i8mm) lists its own copies, named for its -march.

constexpr MatmulKernel kMatmuls[] = {
    // Float weights: decode, then prefill.
    {.name = "f32_gemv_" MOBILELLM_NEON_ISA,
     .weights = DType::kF32,
     .max_tokens = 1,
     .fn = Gemv<DType::kF32>},
    {.name = "f16_gemv_" MOBILELLM_NEON_ISA,
     .weights = DType::kF16,
     .max_tokens = 1,
     .fn = Gemv<DType::kF16>},
    {.name = "bf16_gemv_" MOBILELLM_NEON_ISA,
     .weights = DType::kBF16,
     .max_tokens = 1,
     .fn = Gemv<DType::kBF16>},
    {.name = "f32_gemm_tiles4x2_" MOBILELLM_NEON_ISA,
     .weights = DType::kF32,
     .fn = GemmTiles4x2<DType::kF32>},
    {.name = "f16_gemm_tiles4x2_" MOBILELLM_NEON_ISA,
     .weights = DType::kF16,
     .fn = GemmTiles4x2<DType::kF16>},
    {.name = "bf16_gemm_tiles4x2_" MOBILELLM_NEON_ISA,
     .weights = DType::kBF16,
     .fn = GemmTiles4x2<DType::kBF16>},
// Quantized weights in panels: with i8mm, prefill with SMMLA; then SDOT by element (or its
// emulation) for everything else.
#if defined(__ARM_FEATURE_MATMUL_INT8)
    {.name = "q8_0_q8_gemm_panels_smmla_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .min_tokens = 2,
     .fn = MatmulPanelsMmla<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_panels_smmla_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .min_tokens = 2,
     .fn = MatmulPanelsMmla<DType::kQ4_0>},
#endif
    {.name = "q8_0_q8_matmul_panels_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .fn = MatmulPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_matmul_panels_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .fn = MatmulPanels<DType::kQ4_0>},
    // Quantized weights in planar rows: decode; with i8mm, prefill in 2 x 2 SMMLA tiles; then
    // row by row for everything else.
    {.name = "q8_0_q8_gemv_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ8_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ4_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ4_0>},
#if defined(__ARM_FEATURE_MATMUL_INT8)
    {.name = "q8_0_q8_gemm_tiles2x2_smmla_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ8_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .row_multiple = 2,
     .fn = GemmTiles2x2<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_tiles2x2_smmla_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ4_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .row_multiple = 2,
     .fn = GemmTiles2x2<DType::kQ4_0>},
#endif
    {.name = "q8_0_q8_gemm_rows_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ8_0,
     .fn = GemmRows<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_rows_" MOBILELLM_NEON_ISA,
     .weights = DType::kQ4_0,
     .fn = GemmRows<DType::kQ4_0>},
};

// Attention, one head at a time with the head in registers, for the head sizes MobileLLM uses.
constexpr AttendKernel kAttends[] = {
    {.name = "f32_attend_hd32_" MOBILELLM_NEON_ISA,
     .kv = DType::kF32,
     .head_dim = 32,
     .fn = Attend<8, DType::kF32>},
    {.name = "f32_attend_hd64_" MOBILELLM_NEON_ISA,
     .kv = DType::kF32,
     .head_dim = 64,
     .fn = Attend<16, DType::kF32>},
    {.name = "f16_attend_hd32_" MOBILELLM_NEON_ISA,
     .kv = DType::kF16,
     .head_dim = 32,
     .fn = Attend<8, DType::kF16>},
    {.name = "f16_attend_hd64_" MOBILELLM_NEON_ISA,
     .kv = DType::kF16,
     .head_dim = 64,
     .fn = Attend<16, DType::kF16>},
};

constexpr auto kTableMatmuls = ConcatKernels(kMatmuls, ref::kMatmuls);
constexpr auto kTableAttends = ConcatKernels(kAttends, ref::kAttends);

// A table of this TU's kernels.
constexpr KernelTable MakeTable(const char* name, const char* features,
                                bool (*supported)(const CpuFeatures&)) {
  return {.name = name,
          .features = features,
          .supported = supported,
          .matmuls = kTableMatmuls,
          .attends = kTableAttends,
          .row_to_f32 = {.f32 = RowToF32<DType::kF32>,
                         .f16 = RowToF32<DType::kF16>,
                         .bf16 = RowToF32<DType::kBF16>,
                         .q8_0 = RowToF32<DType::kQ8_0>,
                         .q4_0 = RowToF32<DType::kQ4_0>},
          .quantize_q8 = QuantizeQ8,
          .rmsnorm = RmsNorm,
          .silu_mul = SiluMul,
          .add = Add,
          .rope = Rope,
          .to_f16 = ToF16};
}

}  // namespace
}  // namespace mobilellm::neon
