// AArch64 NEON kernels, one header for three tables. Each table's translation unit compiles this
// with its own -march, and the feature macros pick the integer dot product:
//   neon          (armv8-a):                 vmull_s8 + vpadalq_s16, every AArch64 CPU;
//   neon_dotprod  (armv8.2-a+dotprod):       vdotq_s32, 16 multiply-adds per instruction;
//   neon_i8mm     (armv8.2-a+dotprod+i8mm):  vmmlaq_s32 for prefill (2 tokens x 2 rows per
//                                            instruction), vdotq_s32 for decode.
// That is for planar rows. Matrices in 16-row panels (what the converter writes) go through
// MatmulPanels: SDOT by element (vdotq_laneq_s32), or its vmull_s8 emulation; with i8mm, prefill
// unpacks each panel for SMMLA instead (MatmulPanelsMmla).
// Each function has its twin in ref.h; tests hold them together. Layouts as in kernels.h/format.h.
#pragma once

#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon.h is for AArch64 with NEON"
#endif

#include <arm_neon.h>

#include <cstdint>

#include "mobilellm/kernels/ref.h"

// The suffix of this TU's variant names (kernels.h): the instruction set it is built for.
#if defined(__ARM_FEATURE_MATMUL_INT8)
#define MOBILELLM_NEON_ISA "neon_i8mm"
#elif defined(__ARM_FEATURE_DOTPROD)
#define MOBILELLM_NEON_ISA "neon_dotprod"
#else
#define MOBILELLM_NEON_ISA "neon"
#endif

namespace mobilellm::neon {
// Internal linkage, as in the x86 headers: each table's TU keeps its own copy, built with its own
// -march, so a dotprod build of a helper can never serve the baseline table.
namespace {

// ---- float weights ------------------------------------------------------------------------------

// 4 weights at p + i as f32. f16 -> f32 (FCVTL) and bf16 (a shift) are base AArch64.
template <DType kW>
inline float32x4_t Load4(const void* p, int64_t i) {
  if constexpr (kW == DType::kF32) {
    return vld1q_f32(static_cast<const float*>(p) + i);
  } else if constexpr (kW == DType::kF16) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(p) + i)));
  } else {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(p) + i), 16));
  }
}

// Decode: one weight row at a time, one sequential stream; x stays in L1.
template <DType kW>
void GemvRows(const float* x, const WeightView& wv, int r0, int r1, float* y) {
  const int cols = wv.cols, k16 = cols & ~15;
  for (int r = r0; r < r1; ++r) {
    const int64_t w0 = int64_t(r) * cols;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k < k16; k += 16) {
      a0 = vfmaq_f32(a0, Load4<kW>(wv.data, w0 + k), vld1q_f32(x + k));
      a1 = vfmaq_f32(a1, Load4<kW>(wv.data, w0 + k + 4), vld1q_f32(x + k + 4));
      a2 = vfmaq_f32(a2, Load4<kW>(wv.data, w0 + k + 8), vld1q_f32(x + k + 8));
      a3 = vfmaq_f32(a3, Load4<kW>(wv.data, w0 + k + 12), vld1q_f32(x + k + 12));
    }
    for (; k + 4 <= cols; k += 4) a0 = vfmaq_f32(a0, Load4<kW>(wv.data, w0 + k), vld1q_f32(x + k));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; k < cols; ++k) s += x[k] * ref::WeightAt<kW>(wv.data, w0 + k);
    y[r] = s;
  }
}

template <DType kW>
void Gemv(const MatmulInput& in, const WeightView& wv, int r0, int r1, float* y, int /*y_stride*/) {
  GemvRows<kW>(in.x, wv, r0, r1, y);
}

// Prefill: tiles of 4 weight rows x 2 tokens, so each weight vector loaded (and converted) once
// serves two tokens and each activation vector serves four rows: 8 accumulators of 32.
template <DType kW>
void GemmTiles4x2(const MatmulInput& in, const WeightView& wv, int r0, int r1, float* y,
                  int y_stride) {
  const void* w = wv.data;
  const int cols = wv.cols, k4 = cols & ~3;
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const int64_t w0 = int64_t(r) * cols;
    for (int t = 0; t < in.n_tokens; t += 2) {
      const bool two = t + 1 < in.n_tokens;
      const float* xa = in.x + int64_t(t) * cols;
      const float* xb = two ? xa + cols : xa;  // an odd last token pairs with itself
      float32x4_t a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = b[i] = vdupq_n_f32(0.0f);
      for (int k = 0; k < k4; k += 4) {
        const float32x4_t va = vld1q_f32(xa + k), vb = vld1q_f32(xb + k);
        for (int i = 0; i < 4; ++i) {
          const float32x4_t q = Load4<kW>(w, w0 + i * int64_t(cols) + k);
          a[i] = vfmaq_f32(a[i], q, va), b[i] = vfmaq_f32(b[i], q, vb);
        }
      }
      for (int i = 0; i < 4; ++i) {
        float sa = vaddvq_f32(a[i]), sb = vaddvq_f32(b[i]);
        for (int k = k4; k < cols; ++k) {
          const float q = ref::WeightAt<kW>(w, w0 + i * int64_t(cols) + k);
          sa += xa[k] * q, sb += xb[k] * q;
        }
        y[int64_t(t) * y_stride + r + i] = sa;
        if (two) y[int64_t(t + 1) * y_stride + r + i] = sb;
      }
    }
  }
  for (int t = 0; r < r1 && t < in.n_tokens; ++t)  // leftover rows: one GEMV per token
    GemvRows<kW>(in.x + int64_t(t) * cols, wv, r, r1, y + int64_t(t) * y_stride);
}

template <DType kW>
void RowToF32(const WeightView& w, int row, float* dst) {
  if constexpr (format::IsQuantized(uint32_t(kW))) {
    ref::RowToF32<kW>(w, row, dst);  // one row per token: not worth a SIMD twin
  } else {
    const int64_t base = int64_t(row) * w.cols;
    int i = 0;
    for (; i + 4 <= w.cols; i += 4) vst1q_f32(dst + i, Load4<kW>(w.data, base + i));
    for (; i < w.cols; ++i) dst[i] = ref::WeightAt<kW>(w.data, base + i);
  }
}

// ---- quantized weights x int8 activations -------------------------------------------------------

// acc[i] += sum over 4 consecutive pairs of a * b (16 int8 pairs in, 4 int32 lanes out). Without
// dotprod: widening multiplies, then pairwise accumulate. No int16 overflow: activations are in
// [-127, 127], so 2 * 127 * 128 < 32768.
inline int32x4_t Dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t p =
      vmlal_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vget_high_s8(a), vget_high_s8(b));
  return vpadalq_s16(acc, p);
#endif
}

// The 32 quants of block b of a row as two int8x16 in element order (q4_0 unpacked to [-8, 7]).
template <DType kW>
inline void LoadBlock(const uint8_t* row, int b, int8x16_t* lo, int8x16_t* hi) {
  if constexpr (kW == DType::kQ8_0) {
    *lo = vld1q_s8(reinterpret_cast<const int8_t*>(row + b * 32));
    *hi = vld1q_s8(reinterpret_cast<const int8_t*>(row + b * 32 + 16));
  } else {
    const uint8x16_t bytes = vld1q_u8(row + b * 16);
    const int8x16_t eight = vdupq_n_s8(8);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(15))), eight);
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), eight);
  }
}

// Row r's combined block scales dW[r, b] * dx[b], 4 at a time.
inline void RowScales(const uint16_t* d, const float* xd, int nb, float* s) {
  int b = 0;
  for (; b + 4 <= nb; b += 4) {
    const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d + b)));
    vst1q_f32(s + b, vmulq_f32(dw, vld1q_f32(xd + b)));
  }
  for (; b < nb; ++b) s[b] = F16ToF32(d[b]) * xd[b];
}

// One row against one token's int8 activations, with the row's combined scales s.
template <DType kW>
inline float RowDotQ(const uint8_t* q, const int8_t* xq, const float* s, int nb) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
  int b = 0;
  for (; b + 2 <= nb; b += 2) {
    int8x16_t w0, w1, w2, w3;
    LoadBlock<kW>(q, b, &w0, &w1);
    LoadBlock<kW>(q, b + 1, &w2, &w3);
    const int8_t* x = xq + b * 32;
    const int32x4_t p0 = Dot16(Dot16(vdupq_n_s32(0), vld1q_s8(x), w0), vld1q_s8(x + 16), w1);
    const int32x4_t p1 = Dot16(Dot16(vdupq_n_s32(0), vld1q_s8(x + 32), w2), vld1q_s8(x + 48), w3);
    acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), s[b]);
    acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(p1), s[b + 1]);
  }
  if (b < nb) {
    int8x16_t w0, w1;
    LoadBlock<kW>(q, b, &w0, &w1);
    const int8_t* x = xq + b * 32;
    const int32x4_t p0 = Dot16(Dot16(vdupq_n_s32(0), vld1q_s8(x), w0), vld1q_s8(x + 16), w1);
    acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), s[b]);
  }
  return vaddvq_f32(vaddq_f32(acc0, acc1));
}

// Rows up to 256 blocks (8192 columns) keep their scales on the stack.
constexpr int kMaxBlocks = 256;

template <DType kW>
void GemvQ(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int /*y_stride*/) {
  const int8_t* xq = in.q;
  const float* xd = in.d;
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16;
  const int nb = w.cols / format::kBlock;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  float s[kMaxBlocks];
  for (int r = r0; r < r1; ++r) {
    RowScales(scales + int64_t(r) * nb, xd, nb, s);
    y[r] = RowDotQ<kW>(quants + int64_t(r) * nb * kBlockBytes, xq, s, nb);
  }
}

#if defined(__ARM_FEATURE_MATMUL_INT8)
// Two rows x two tokens with the 8x2x2 int8 matrix multiply: SMMLA takes a 2x8 block of each
// operand (two tokens' 8 activations, two rows' 8 weights) and adds their 2x2 product, so one
// instruction does the work of four dot products. out = {t0.r0, t0.r1, t1.r0, t1.r1}.
template <DType kW>
inline float32x4_t Tile2x2(const uint8_t* q0, const uint8_t* q1, const int8_t* x0, const int8_t* x1,
                           const float* d0, const float* d1, const float* e0, const float* e1,
                           int nb) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int b = 0; b < nb; ++b) {
    int8x16_t wa0, wa1, wb0, wb1;
    LoadBlock<kW>(q0, b, &wa0, &wa1);
    LoadBlock<kW>(q1, b, &wb0, &wb1);
    int32x4_t isum = vdupq_n_s32(0);
    for (int h = 0; h < 2; ++h) {
      const int8x16_t xa = vld1q_s8(x0 + b * 32 + h * 16), xb = vld1q_s8(x1 + b * 32 + h * 16);
      const int64x2_t wa = vreinterpretq_s64_s8(h ? wa1 : wa0),
                      wb = vreinterpretq_s64_s8(h ? wb1 : wb0);
      const int64x2_t ta = vreinterpretq_s64_s8(xa), tb = vreinterpretq_s64_s8(xb);
      // Rows of the operands: [token 0 | token 1] and [row 0 | row 1], 8 int8 each.
      isum = vmmlaq_s32(isum, vreinterpretq_s8_s64(vzip1q_s64(ta, tb)),
                        vreinterpretq_s8_s64(vzip1q_s64(wa, wb)));
      isum = vmmlaq_s32(isum, vreinterpretq_s8_s64(vzip2q_s64(ta, tb)),
                        vreinterpretq_s8_s64(vzip2q_s64(wa, wb)));
    }
    // Combined scales in the same order: dW per row (d0, d1) times dx per token (e0, e1).
    const float32x4_t scale = {d0[b] * e0[b], d1[b] * e0[b], d0[b] * e1[b], d1[b] * e1[b]};
    acc = vfmaq_f32(acc, vcvtq_f32_s32(isum), scale);
  }
  return acc;
}
#endif

// ---- panels (format.h): 4 weights of 16 rows per 64 bytes, four rows per register
// ----------------

// acc[i] += row i of w (4 int8) . lane kLane of x (4 int8). With dotprod: SDOT by element.
// Without: widening multiplies against the lane repeated, then two pairwise adds (no int16
// overflow: a pair sum is at most 2 * 127 * 127 < 32768).
template <int kLane>
inline int32x4_t Dot4Lane(int32x4_t acc, int8x16_t w, int8x16_t x) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_laneq_s32(acc, w, x, kLane);
#else
  const int8x16_t xl = vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(x), kLane));
  return vpadalq_s16(acc,
                     vpaddq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(xl)), vmull_high_s8(w, xl)));
#endif
}

// Group kG (elements 4kG..4kG+3) of 4 rows against the same elements of x = {x0, x1}.
template <int kG>
inline int32x4_t GroupDot(int32x4_t acc, int8x16_t w, int8x16_t x0, int8x16_t x1) {
  return Dot4Lane<kG % 4>(acc, w, kG < 4 ? x0 : x1);
}

// Rows 4k..4k+3 of a stored panel block q against the block's activations x0, x1, added to acc.
// q4_0 nibbles go in as stored (q + 8, non-negative, so valid int8); the caller starts acc at
// -8 * sum(x) for the offset.
template <DType kW>
inline int32x4_t PanelRowsDot(int32x4_t acc, const uint8_t* q, int k, int8x16_t x0, int8x16_t x1) {
  const auto ld = [&](int off) { return vld1q_u8(q + off + 16 * k); };
  if constexpr (kW == DType::kQ8_0) {
    acc = GroupDot<0>(acc, vreinterpretq_s8_u8(ld(0)), x0, x1);
    acc = GroupDot<1>(acc, vreinterpretq_s8_u8(ld(64)), x0, x1);
    acc = GroupDot<2>(acc, vreinterpretq_s8_u8(ld(128)), x0, x1);
    acc = GroupDot<3>(acc, vreinterpretq_s8_u8(ld(192)), x0, x1);
    acc = GroupDot<4>(acc, vreinterpretq_s8_u8(ld(256)), x0, x1);
    acc = GroupDot<5>(acc, vreinterpretq_s8_u8(ld(320)), x0, x1);
    acc = GroupDot<6>(acc, vreinterpretq_s8_u8(ld(384)), x0, x1);
    acc = GroupDot<7>(acc, vreinterpretq_s8_u8(ld(448)), x0, x1);
  } else {
    const uint8x16_t m = vdupq_n_u8(15);
    const uint8x16_t c0 = ld(0), c1 = ld(64), c2 = ld(128), c3 = ld(192);
    acc = GroupDot<0>(acc, vreinterpretq_s8_u8(vandq_u8(c0, m)), x0, x1);
    acc = GroupDot<1>(acc, vreinterpretq_s8_u8(vshrq_n_u8(c0, 4)), x0, x1);
    acc = GroupDot<2>(acc, vreinterpretq_s8_u8(vandq_u8(c1, m)), x0, x1);
    acc = GroupDot<3>(acc, vreinterpretq_s8_u8(vshrq_n_u8(c1, 4)), x0, x1);
    acc = GroupDot<4>(acc, vreinterpretq_s8_u8(vandq_u8(c2, m)), x0, x1);
    acc = GroupDot<5>(acc, vreinterpretq_s8_u8(vshrq_n_u8(c2, 4)), x0, x1);
    acc = GroupDot<6>(acc, vreinterpretq_s8_u8(vandq_u8(c3, m)), x0, x1);
    acc = GroupDot<7>(acc, vreinterpretq_s8_u8(vshrq_n_u8(c3, 4)), x0, x1);
  }
  return acc;
}

// Decode and prefill from panels. Per panel, a chunk of 32 blocks (16 KB at q8_0) stays in L1
// while every token passes over it; per token and block, 32 lane dot products fill the 16 rows'
// int32 sums, then one convert and FMA per 4 rows with the stored row scales times dx.
template <DType kW>
void MatmulPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                  int y_stride) {
  constexpr int kChunk = 32;
  const int nb = w.cols / format::kBlock, block_bytes = ref::PanelBlockBytes(w);
  for (int r = r0; r < r1; r += format::kPanelRows) {
    const uint8_t* blocks = ref::PanelBlock(w, r, 0);
    for (int b0 = 0; b0 < nb; b0 += kChunk) {
      const int b1 = nb - b0 < kChunk ? nb : b0 + kChunk;
      for (int t = 0; t < in.n_tokens; ++t) {
        const int8_t* xt = in.q + int64_t(t) * w.cols;
        const float* xd = in.d + int64_t(t) * nb;
        float* out = y + int64_t(t) * y_stride + r;
        float32x4_t acc[4];
        for (int k = 0; k < 4; ++k) acc[k] = b0 == 0 ? vdupq_n_f32(0.0f) : vld1q_f32(out + 4 * k);
        for (int b = b0; b < b1; ++b) {
          const uint8_t* block = blocks + int64_t(b) * block_bytes;
          const uint8_t* q = block + 2 * format::kPanelRows;
          const uint16_t* dw = reinterpret_cast<const uint16_t*>(block);
          const int8x16_t x0 = vld1q_s8(xt + b * 32), x1 = vld1q_s8(xt + b * 32 + 16);
          int32x4_t start = vdupq_n_s32(0);
          if constexpr (kW == DType::kQ4_0)
            start = vdupq_n_s32(-8 * (vaddlvq_s8(x0) + vaddlvq_s8(x1)));
          const float32x4_t dx = vdupq_n_f32(xd[b]);
          for (int k = 0; k < 4; ++k) {
            const int32x4_t i = PanelRowsDot<kW>(start, q, k, x0, x1);
            const float32x4_t sc =
                vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dw + 4 * k))), dx);
            acc[k] = vfmaq_f32(acc[k], vcvtq_f32_s32(i), sc);
          }
        }
        for (int k = 0; k < 4; ++k) vst1q_f32(out + 4 * k, acc[k]);
      }
    }
  }
}

#if defined(__ARM_FEATURE_MATMUL_INT8)
// Prefill from panels with SMMLA: 16 rows x up to 32 blocks of a panel are unpacked once into L1
// as 8 row pairs x 8 elements per 16 bytes (SMMLA's operand order, q4_0 as q - 8, so no offset
// remains), then each pair of tokens passes over them: per block, 4 SMMLA per row pair give its
// 2 x 2 tile {t.r0, t.r1, t1.r0, t1.r1}, 32 multiply-adds per instruction where SDOT by element
// does 16. An odd last token goes through MatmulPanels.
template <DType kW>
void MatmulPanelsMmla(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                      int y_stride) {
  constexpr int kChunk = 32;
  const int nb = w.cols / format::kBlock, t_pairs = in.n_tokens & ~1;
  alignas(16) int8_t wp[kChunk][4][8][16];  // [block][8-element chunk][row pair]: 16 KB
  alignas(16) float rs[kChunk][8][4];       // {dW r0, dW r1, dW r0, dW r1} per row pair
  for (int r = r0; r < r1; r += format::kPanelRows) {
    for (int b0 = 0; b0 < nb; b0 += kChunk) {
      const int n = nb - b0 < kChunk ? nb - b0 : kChunk;
      for (int j = 0; j < n; ++j) {
        const uint8_t* q = ref::PanelQuants(w, r, b0 + j);
        for (int c = 0; c < 4; ++c) {
          for (int k = 0; k < 4; ++k) {  // rows 4k..4k+3
            int8x16_t ga, gb;  // elements 8c..8c+3 and 8c+4..8c+7 of the four rows, 4 bytes each
            if constexpr (kW == DType::kQ8_0) {
              ga = vld1q_s8(reinterpret_cast<const int8_t*>(q + 128 * c + 16 * k));
              gb = vld1q_s8(reinterpret_cast<const int8_t*>(q + 128 * c + 64 + 16 * k));
            } else {
              const uint8x16_t v = vld1q_u8(q + 64 * c + 16 * k);
              ga = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), vdupq_n_s8(8));
              gb = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
            }
            const int32x4_t a = vreinterpretq_s32_s8(ga), b = vreinterpretq_s32_s8(gb);
            vst1q_s8(wp[j][c][2 * k], vreinterpretq_s8_s32(vzip1q_s32(a, b)));
            vst1q_s8(wp[j][c][2 * k + 1], vreinterpretq_s8_s32(vzip2q_s32(a, b)));
          }
        }
        const uint16_t* d = ref::PanelScales(w, r, b0 + j);
        for (int p = 0; p < 8; ++p) {
          const float d0 = F16ToF32(d[2 * p]), d1 = F16ToF32(d[2 * p + 1]);
          rs[j][p][0] = rs[j][p][2] = d0;
          rs[j][p][1] = rs[j][p][3] = d1;
        }
      }
      for (int t = 0; t < t_pairs; t += 2) {
        const int8_t* x0 = in.q + int64_t(t) * w.cols;
        const int8_t* x1 = x0 + w.cols;
        const float* e0 = in.d + int64_t(t) * nb;
        float32x4_t acc[8];
        for (int p = 0; p < 8; ++p) acc[p] = vdupq_n_f32(0.0f);
        for (int j = 0; j < n; ++j) {
          const int b = b0 + j;
          int8x16_t xv[4];  // [t: 8 | t + 1: 8] activations of chunk c
          for (int c = 0; c < 4; ++c)
            xv[c] = vcombine_s8(vld1_s8(x0 + b * 32 + 8 * c), vld1_s8(x1 + b * 32 + 8 * c));
          const float32x4_t dx = {e0[b], e0[b], e0[nb + b], e0[nb + b]};
          for (int p = 0; p < 8; ++p) {
            int32x4_t i = vmmlaq_s32(vdupq_n_s32(0), xv[0], vld1q_s8(wp[j][0][p]));
            i = vmmlaq_s32(i, xv[1], vld1q_s8(wp[j][1][p]));
            i = vmmlaq_s32(i, xv[2], vld1q_s8(wp[j][2][p]));
            i = vmmlaq_s32(i, xv[3], vld1q_s8(wp[j][3][p]));
            acc[p] = vfmaq_f32(acc[p], vcvtq_f32_s32(i), vmulq_f32(vld1q_f32(rs[j][p]), dx));
          }
        }
        float* out0 = y + int64_t(t) * y_stride + r;
        float* out1 = out0 + y_stride;
        for (int p = 0; p < 8; ++p) {
          float32x2_t v0 = vget_low_f32(acc[p]), v1 = vget_high_f32(acc[p]);
          if (b0 > 0) {
            v0 = vadd_f32(v0, vld1_f32(out0 + 2 * p));
            v1 = vadd_f32(v1, vld1_f32(out1 + 2 * p));
          }
          vst1_f32(out0 + 2 * p, v0);
          vst1_f32(out1 + 2 * p, v1);
        }
      }
    }
  }
  if (t_pairs < in.n_tokens) {
    const int t = t_pairs;
    const MatmulInput last{in.x ? in.x + int64_t(t) * w.cols : nullptr, in.q + int64_t(t) * w.cols,
                           in.d + int64_t(t) * nb, 1, in.cols};
    MatmulPanels<kW>(last, w, r0, r1, y + int64_t(t) * y_stride, y_stride);
  }
}
#endif

#if defined(__ARM_FEATURE_MATMUL_INT8)
// Prefill from planar rows with i8mm: 2 x 2 SMMLA tiles (Tile2x2) over row pairs (r1 - r0 even) and
// token pairs, an odd last token row by row. At most kMaxBlocks blocks, at least 2 tokens.
template <DType kW>
void GemmTiles2x2(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                  int y_stride) {
  const int nb = w.cols / format::kBlock;
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16;
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  const int t_pairs = in.n_tokens & ~1;
  float d0[kMaxBlocks], d1[kMaxBlocks];
  for (int r = r0; r < r1; r += 2) {
    for (int b = 0; b < nb; ++b) {
      d0[b] = F16ToF32(scales[int64_t(r) * nb + b]);
      d1[b] = F16ToF32(scales[int64_t(r + 1) * nb + b]);
    }
    for (int t = 0; t < t_pairs; t += 2) {
      const int8_t* x0 = in.q + int64_t(t) * w.cols;
      const float* e0 = in.d + int64_t(t) * nb;
      const float32x4_t v = Tile2x2<kW>(quants + r * row_bytes, quants + (r + 1) * row_bytes, x0,
                                        x0 + w.cols, d0, d1, e0, e0 + nb, nb);
      y[int64_t(t) * y_stride + r] = vgetq_lane_f32(v, 0);
      y[int64_t(t) * y_stride + r + 1] = vgetq_lane_f32(v, 1);
      y[int64_t(t + 1) * y_stride + r] = vgetq_lane_f32(v, 2);
      y[int64_t(t + 1) * y_stride + r + 1] = vgetq_lane_f32(v, 3);
    }
  }
  // The odd last token, row by row.
  if (t_pairs < in.n_tokens)
    for (int r = r0; r < r1; ++r)
      for (int t = t_pairs; t < in.n_tokens; ++t) {
        float s[kMaxBlocks];
        RowScales(scales + int64_t(r) * nb, in.d + int64_t(t) * nb, nb, s);
        y[int64_t(t) * y_stride + r] =
            RowDotQ<kW>(quants + r * row_bytes, in.q + int64_t(t) * w.cols, s, nb);
      }
}
#endif

// Planar rows, any row width: each row's scales once, then the row against every token (the row
// stays in L1 while the tokens stream past it).
template <DType kW>
void GemmRows(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int y_stride) {
  const int nb = w.cols / format::kBlock;
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16;
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  for (int r = r0; r < r1; ++r) {
    const uint8_t* q = quants + r * row_bytes;
    for (int t = 0; t < in.n_tokens; ++t) {
      const int8_t* xq = in.q + int64_t(t) * w.cols;
      const float* xd = in.d + int64_t(t) * nb;
      float sum = 0.0f;
      for (int b0 = 0; b0 < nb; b0 += kMaxBlocks) {  // any row width, kMaxBlocks at a time
        const int n = nb - b0 < kMaxBlocks ? nb - b0 : kMaxBlocks;
        float s[kMaxBlocks];
        RowScales(scales + int64_t(r) * nb + b0, xd + b0, n, s);
        sum += RowDotQ<kW>(q + b0 * kBlockBytes, xq + b0 * 32, s, n);
      }
      y[int64_t(t) * y_stride + r] = sum;
    }
  }
}

// Same arithmetic as ref::QuantizeQ8 (max, 1 / (max / 127), round half even), so the int8
// values are identical.
inline void QuantizeQ8(const float* x, int n, int8_t* q, float* d) {
  for (int b = 0; b < n / 32; ++b) {
    float32x4_t v[8], mx = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; ++j) {
      v[j] = vld1q_f32(x + b * 32 + j * 4);
      mx = vmaxq_f32(mx, vabsq_f32(v[j]));
    }
    const float amax = vmaxvq_f32(mx), scale = amax / 127.0f,
                inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    d[b] = scale;
    for (int j = 0; j < 8; j += 2) {
      const int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(v[j], inv));
      const int32x4_t i1 = vcvtnq_s32_f32(vmulq_n_f32(v[j + 1], inv));
      const int16x8_t h = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
      vst1_s8(q + b * 32 + j * 4, vqmovn_s16(h));
    }
  }
}

// ---- elementwise ops ----------------------------------------------------------------------------

// exp(x) for x in [-87, 88], the Cephes polynomial of the AVX2 twin: relative error < 2e-7.
inline float32x4_t Exp(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
  const float32x4_t fx = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  x = vfmsq_f32(x, fx, vdupq_n_f32(0.693359375f));
  x = vfmsq_f32(x, fx, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t y = vdupq_n_f32(1.9875691500E-4f);
  y = vfmaq_f32(vdupq_n_f32(1.3981999507E-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(8.3334519073E-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(4.1665795894E-2f), y, x);
  y = vfmaq_f32(vdupq_n_f32(1.6666665459E-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(5.0000001201E-1f), y, x);
  y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0f)), y, vmulq_f32(x, x));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(fx), vdupq_n_s32(127)), 23);
  return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

// sum x*y over n floats.
inline float Dot(const float* x, const float* y, int n) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
  }
  for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
  float s = vaddvq_f32(vaddq_f32(a0, a1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

inline void RmsNorm(const float* x, const float* w, int n, float eps, float* out) {
  const float inv = 1.0f / std::sqrt(Dot(x, x, n) / float(n) + eps);
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(out + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), inv), vld1q_f32(w + i)));
  for (; i < n; ++i) out[i] = (x[i] * inv) * w[i];
}

inline void SiluMul(float* gate, const float* up, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t g = vld1q_f32(gate + i);
    const float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), Exp(vnegq_f32(g))));
    vst1q_f32(gate + i, vmulq_f32(s, vld1q_f32(up + i)));
  }
  ref::SiluMul(gate + i, up + i, n - i);
}

inline void Add(float* y, const float* x, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

// Attention for a head of kH x 4 values (f32 or f16 cache), query and output held in registers.
template <int kH, DType kKV>
void AttendHead(const float* q, const void* keys, const void* values, int n_keys, int stride,
                float scale, float* scores, float* out, float* lse) {
  constexpr int hd = 4 * kH;
  float32x4_t acc[kH];
  // Scores a key block (16 positions, four registers a dimension) at a time: q[d] times each,
  // in two accumulator sets (d even, d odd) so the FMA chains overlap; no horizontal sums.
  float max = -INFINITY;
  for (int p0 = 0; p0 < n_keys; p0 += kKeyBlock) {
    const int64_t block = KeyIndex(p0, 0, hd);
    float32x4_t a[2][4];
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 4; ++i) a[j][i] = vdupq_n_f32(0.0f);
    for (int d = 0; d < hd; d += 2) {
      for (int j = 0; j < 2; ++j) {
        const int64_t at = block + int64_t(d + j) * kKeyBlock;
        for (int i = 0; i < 4; ++i)
          a[j][i] = vfmaq_n_f32(a[j][i], Load4<kKV>(keys, at + 4 * i), q[d + j]);
      }
    }
    alignas(16) float s[kKeyBlock];
    for (int i = 0; i < 4; ++i)
      vst1q_f32(s + 4 * i, vmulq_n_f32(vaddq_f32(a[0][i], a[1][i]), scale));
    const int n = std::min(kKeyBlock, n_keys - p0);
    for (int i = 0; i < n; ++i) {
      scores[p0 + i] = s[i];
      max = s[i] > max ? s[i] : max;
    }
  }
  float sum = 0.0f;
  for (int p = 0; p < n_keys; ++p) sum += scores[p] = std::exp(scores[p] - max);
  for (int i = 0; i < kH; ++i) acc[i] = vdupq_n_f32(0.0f);
  for (int p = 0; p < n_keys; ++p) {
    const int64_t v = int64_t(p) * stride;
    for (int i = 0; i < kH; ++i)
      acc[i] = vfmaq_n_f32(acc[i], Load4<kKV>(values, v + 4 * i), scores[p]);
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < kH; ++i) vst1q_f32(out + 4 * i, vmulq_n_f32(acc[i], inv));
  if (lse) *lse = max + std::log(sum);
}

// One head of kH x 4 values (AttendHead), with AttendOne's signature.
template <int kH, DType kKV>
void AttendOne(const float* q, const void* keys, const void* values, int n_keys, int stride,
               int /*hd*/, float scale, float* scores, float* out, float* lse) {
  AttendHead<kH, kKV>(q, keys, values, n_keys, stride, scale, scores, out, lse);
}

// The heads of a group one by one (each reads the keys and values again, from cache).
template <int kH, DType kKV>
void Attend(const float* q, int n_q, const void* keys, const void* values, int n_keys, int stride,
            int hd, float scale, float* scores, float* out, float* lse) {
  ref::AttendHeads<AttendOne<kH, kKV>>(q, n_q, keys, values, n_keys, stride, hd, scale, scores, out,
                                       lse);
}

inline void Rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
                 uint32_t style) {
  const int half = head_dim / 2;
  if (style != uint32_t(format::RopeStyle::kHalf) || half % 4 != 0) {
    ref::Rope(x, n_heads, head_dim, cos, sin, style);
    return;
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < half; i += 4) {
      const float32x4_t x0 = vld1q_f32(v + i), x1 = vld1q_f32(v + i + half);
      const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
      vst1q_f32(v + i, vfmsq_f32(vmulq_f32(x0, c), x1, s));
      vst1q_f32(v + i + half, vfmaq_f32(vmulq_f32(x1, c), x0, s));
    }
  }
}

// FCVTN rounds by FPCR, nearest even by default, like F32ToF16 (NaN payloads aside).
inline void ToF16(const float* x, int n, uint16_t* out) {
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  for (; i < n; ++i) out[i] = F32ToF16(x[i]);
}

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
