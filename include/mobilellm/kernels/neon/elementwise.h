// NEON elementwise ops: embedding rows, int8 quantization, RMSNorm, SwiGLU's gate, add, RoPE, the
// f16 cache write.
#pragma once

#include "mobilellm/kernels/neon/common.h"

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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

}  // namespace
}  // namespace mobilellm::neon
