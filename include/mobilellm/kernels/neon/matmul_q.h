// NEON matmuls with quantized weights (q8_0, q4_0) in planar rows against int8 activations: the
// decode GEMV, with i8mm the 2 x 2 SMMLA prefill tiles, and row by row for the rest. The integer
// dot product is SDOT with dotprod, else widening multiplies.
#pragma once

#include "mobilellm/kernels/neon/common.h"

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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

}  // namespace
}  // namespace mobilellm::neon
