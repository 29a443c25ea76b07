// The AVX2 + FMA + F16C kernels, by family in kernels/avx2/, and the variant lists and table built
// from them. Included only by the translation units compiled with those flags (src/kernels/avx2.cpp
// and the tables built on it), so the rest of the binary runs on any x86-64 CPU and the table is
// picked at run time. Each kernel has its twin in ref.h; tests hold them together.
#pragma once

#include "mobilellm/kernels/avx2/attention.h"
#include "mobilellm/kernels/avx2/elementwise.h"
#include "mobilellm/kernels/avx2/matmul_float.h"
#include "mobilellm/kernels/avx2/matmul_panels.h"
#include "mobilellm/kernels/avx2/matmul_q.h"

namespace mobilellm::avx2 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// ---- the variants (kernels.h), in the order a table tries them ---------------------------------
// Each TU that includes this header (avx2, avxvnni, avx512vnni, amx and the test twins) lists its
// own copies, compiled with its own flags.

// Float weights: decode, then prefill (16-row panels, then the rows left over in 4-row tiles).
constexpr MatmulKernel kFloatMatmuls[] = {
    {.name = "f32_gemv_avx2", .weights = DType::kF32, .max_tokens = 1, .fn = Gemv<DType::kF32>},
    {.name = "f16_gemv_avx2", .weights = DType::kF16, .max_tokens = 1, .fn = Gemv<DType::kF16>},
    {.name = "bf16_gemv_avx2", .weights = DType::kBF16, .max_tokens = 1, .fn = Gemv<DType::kBF16>},
    {.name = "f32_gemm_panels_avx2",
     .weights = DType::kF32,
     .min_tokens = 2,
     .row_multiple = 16,
     .fn = GemmPanelsFloat<DType::kF32>},
    {.name = "f16_gemm_panels_avx2",
     .weights = DType::kF16,
     .min_tokens = 2,
     .row_multiple = 16,
     .fn = GemmPanelsFloat<DType::kF16>},
    {.name = "bf16_gemm_panels_avx2",
     .weights = DType::kBF16,
     .min_tokens = 2,
     .row_multiple = 16,
     .fn = GemmPanelsFloat<DType::kBF16>},
    {.name = "f32_gemm_tiles4x2_avx2", .weights = DType::kF32, .fn = GemmTiles4x2<DType::kF32>},
    {.name = "f16_gemm_tiles4x2_avx2", .weights = DType::kF16, .fn = GemmTiles4x2<DType::kF16>},
    {.name = "bf16_gemm_tiles4x2_avx2", .weights = DType::kBF16, .fn = GemmTiles4x2<DType::kBF16>},
};

// Quantized weights in the panel layout: decode, then prefill.
constexpr MatmulKernel kPanelMatmuls[] = {
    {.name = "q8_0_q8_gemv_panels_avx2",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_panels_avx2",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ4_0>},
    {.name = "q8_0_q8_gemm_panels_avx2",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ8_0, true>},
    {.name = "q4_0_q8_gemm_panels_avx2",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ4_0, true>},
};

// Quantized weights in planar rows, decode.
constexpr MatmulKernel kRowGemvs[] = {
    {.name = "q8_0_q8_gemv_avx2",
     .weights = DType::kQ8_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_avx2",
     .weights = DType::kQ4_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ4_0>},
};

// Quantized weights in planar rows, prefill: 16 rows at a time gathered into panels, then the
// rows left over (and rows too wide for the panels, and decode of such rows) in 4-row tiles.
constexpr MatmulKernel kRowGemms[] = {
    {.name = "q8_0_q8_gemm_gathered_panels_avx2",
     .weights = DType::kQ8_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ8_0, false>},
    {.name = "q4_0_q8_gemm_gathered_panels_avx2",
     .weights = DType::kQ4_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ4_0, false>},
    {.name = "q8_0_q8_gemm_tiles4_avx2", .weights = DType::kQ8_0, .fn = GemmTiles4<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_tiles4_avx2", .weights = DType::kQ4_0, .fn = GemmTiles4<DType::kQ4_0>},
};

// Attention, one head at a time with the head in registers, for the head sizes MobileLLM uses.
constexpr AttendKernel kAttends[] = {
    {.name = "f32_attend_hd32_avx2",
     .kv = DType::kF32,
     .head_dim = 32,
     .fn = Attend<4, DType::kF32>},
    {.name = "f32_attend_hd64_avx2",
     .kv = DType::kF32,
     .head_dim = 64,
     .fn = Attend<8, DType::kF32>},
    {.name = "f32_attend_hd128_avx2",
     .kv = DType::kF32,
     .head_dim = 128,
     .fn = Attend<16, DType::kF32>},
    {.name = "f16_attend_hd32_avx2",
     .kv = DType::kF16,
     .head_dim = 32,
     .fn = Attend<4, DType::kF16>},
    {.name = "f16_attend_hd64_avx2",
     .kv = DType::kF16,
     .head_dim = 64,
     .fn = Attend<8, DType::kF16>},
    {.name = "f16_attend_hd128_avx2",
     .kv = DType::kF16,
     .head_dim = 128,
     .fn = Attend<16, DType::kF16>},
};

constexpr RowToF32Fns kRowToF32 = {.f32 = RowToF32<DType::kF32>,
                                   .f16 = RowToF32<DType::kF16>,
                                   .bf16 = RowToF32<DType::kBF16>,
                                   .q8_0 = RowToF32<DType::kQ8_0>,
                                   .q4_0 = RowToF32<DType::kQ4_0>};

// The "avx2" table's lists, and the table. The other x86 tables are this one with their own name,
// features and lists (src/kernels/*.cpp): they share its elementwise ops.
constexpr auto kTableMatmuls =
    ConcatKernels(kFloatMatmuls, kPanelMatmuls, kRowGemvs, kRowGemms, ref::kMatmuls);
constexpr auto kTableAttends = ConcatKernels(kAttends, ref::kAttends);
constexpr KernelTable kTable = {
    .name = "avx2",
    .features = "avx2 fma f16c",
    .supported = [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; },
    .matmuls = kTableMatmuls,
    .attends = kTableAttends,
    .row_to_f32 = kRowToF32,
    .quantize_q8 = QuantizeQ8,
    .rmsnorm = RmsNorm,
    .silu_mul = SiluMul,
    .add = Add,
    .rope = Rope,
    .to_f16 = ToF16,
};

}  // namespace
}  // namespace mobilellm::avx2
