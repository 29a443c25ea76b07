// NEON matmuls with float weights (f32, f16, bf16): the decode GEMV and the 4 x 2 prefill tiles.
#pragma once

#include "mobilellm/kernels/neon/common.h"

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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

}  // namespace
}  // namespace mobilellm::neon
