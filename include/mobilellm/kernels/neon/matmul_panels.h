// NEON matmuls with quantized weights in 16-row panels (format.h: 4 weights of 16 rows per 64
// bytes, four rows per register): SDOT by element (or its emulation) for decode and prefill, with
// i8mm SMMLA for prefill.
#pragma once

#include "mobilellm/kernels/neon/matmul_q.h"

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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

}  // namespace
}  // namespace mobilellm::neon
