// The AVX-512 VNNI kernels, by family in kernels/avx512/, and the variant lists of the tables built
// on them (avx512vnni, amx and its test twin). Included only by translation units built with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni; float weights and elementwise ops reuse the AVX2
// bodies in those tables.
#pragma once

#include "mobilellm/kernels/avx512/attention.h"
#include "mobilellm/kernels/avx512/matmul_panels.h"
#include "mobilellm/kernels/avx512/matmul_q.h"

// What the AVX-512 VNNI kernels need, for every table built on them (avx512vnni, amx and its
// test twin): the features' names for messages, and the check.
#define MOBILELLM_AVX512VNNI_FEATURES "avx2 fma f16c avx512f avx512bw avx512vl avx512vnni"

namespace mobilellm::avx512 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

inline bool Supported(const CpuFeatures& f) {
  return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

// ---- the variants (kernels.h), in the order a table tries them ---------------------------------

// Quantized weights: decode from panels and from rows, prefill from panels (stored, then planar
// rows gathered 16 at a time, then their leftover rows in 4-row tiles).
constexpr MatmulKernel kMatmuls[] = {
    {.name = "q8_0_q8_gemv_panels_avx512vnni",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_panels_avx512vnni",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ4_0>},
    {.name = "q8_0_q8_gemv_avx512vnni",
     .weights = DType::kQ8_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_avx512vnni",
     .weights = DType::kQ4_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ4_0>},
    {.name = "q8_0_q8_gemm_panels_avx512vnni",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ8_0, true>},
    {.name = "q4_0_q8_gemm_panels_avx512vnni",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ4_0, true>},
    {.name = "q8_0_q8_gemm_gathered_panels_avx512vnni",
     .weights = DType::kQ8_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ8_0, false>},
    {.name = "q4_0_q8_gemm_gathered_panels_avx512vnni",
     .weights = DType::kQ4_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ4_0, false>},
    {.name = "q8_0_q8_gemm_tiles4_avx512vnni",
     .weights = DType::kQ8_0,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 4,
     .fn = GemmTiles4<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_tiles4_avx512vnni",
     .weights = DType::kQ4_0,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 4,
     .fn = GemmTiles4<DType::kQ4_0>},
};

// Attention, head dim 64: long contexts in one pass, short ones in two. Measured in decode steps
// (q4_0 125M, one thread): at 128-328 positions the two-pass kernel spent 3-5% less time in
// attention, at ~540-670 the one-pass kernel 4-6% less and at ~1,550 12% less; from cache the
// two-pass kernel is 10-20% faster at any length.
constexpr int kStreamKeys = 512;
constexpr AttendKernel kAttends[] = {
    {.name = "f32_attend_hd64_gqa_streamed_avx512",
     .kv = DType::kF32,
     .head_dim = 64,
     .min_keys = kStreamKeys,
     .fn = AttendHd64<DType::kF32, true>},
    {.name = "f16_attend_hd64_gqa_streamed_avx512",
     .kv = DType::kF16,
     .head_dim = 64,
     .min_keys = kStreamKeys,
     .fn = AttendHd64<DType::kF16, true>},
    {.name = "f32_attend_hd64_gqa_avx512",
     .kv = DType::kF32,
     .head_dim = 64,
     .fn = AttendHd64<DType::kF32, false>},
    {.name = "f16_attend_hd64_gqa_avx512",
     .kv = DType::kF16,
     .head_dim = 64,
     .fn = AttendHd64<DType::kF16, false>},
};

// The lists of a table built on these kernels. The AVX2 row kernels serve what the AVX-512 ones do
// not: odd block counts (no MobileLLM shape has one), rows wider than kMaxBlocks, rows left over
// by the 4-row tiles; the AVX2 attention serves other head sizes.
constexpr auto kTableMatmuls =
    ConcatKernels(avx2::kFloatMatmuls, kMatmuls, avx2::kRowGemms, ref::kMatmuls);
constexpr auto kTableAttends = ConcatKernels(kAttends, avx2::kAttends, ref::kAttends);

}  // namespace
}  // namespace mobilellm::avx512
