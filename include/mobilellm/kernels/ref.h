// The scalar reference kernels: the executable specification of every op.
//
// Plain C++ loops, no intrinsics, written to read like the PyTorch they mirror. Every SIMD table
// is tested against these. They are also a complete, portable table of their own ("ref").
#pragma once

#include <cmath>
#include <cstdint>

#include "mobilellm/format.h"
#include "mobilellm/tensor.h"

namespace mobilellm::ref {

inline float LoadF32(const float* p, int i) {
  return p[i];
}
inline float LoadF32(const uint16_t* p, int i, DType dt) {
  return dt == DType::kF16 ? F16ToF32(p[i]) : BF16ToF32(p[i]);
}

template <DType kW>
inline float WeightAt(const void* w, int64_t i) {
  if constexpr (kW == DType::kF32) return static_cast<const float*>(w)[i];
  if constexpr (kW == DType::kF16) return F16ToF32(static_cast<const uint16_t*>(w)[i]);
  if constexpr (kW == DType::kBF16) return BF16ToF32(static_cast<const uint16_t*>(w)[i]);
  return 0.0f;
}

// y[t, r] = x[t, :] . W[r, :]
template <DType kW>
void Matmul(const float* x, int n_tokens, const void* w, int cols, int r0, int r1, float* y,
            int y_stride) {
  for (int t = 0; t < n_tokens; ++t) {
    for (int r = r0; r < r1; ++r) {
      float sum = 0.0f;
      for (int k = 0; k < cols; ++k)
        sum += x[t * cols + k] * WeightAt<kW>(w, int64_t(r) * cols + k);
      y[t * y_stride + r] = sum;
    }
  }
}

template <DType kW>
void RowToF32(const void* src, float* dst, int n) {
  for (int i = 0; i < n; ++i) dst[i] = WeightAt<kW>(src, i);
}

// HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then * weight.
inline void RmsNorm(const float* x, const float* w, int n, float eps, float* out) {
  float ss = 0.0f;
  for (int i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = (x[i] * inv) * w[i];
}

inline void Softmax(float* x, int n) {
  float max = x[0];
  for (int i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

// SwiGLU's gate: silu(g) * u, silu(g) = g / (1 + exp(-g)).
inline void SiluMul(float* gate, const float* up, int n) {
  for (int i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

inline void Add(float* y, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += x[i];
}

inline float Dot(const float* x, const float* y, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

inline void Axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// HF: out = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[h:], x[:h]), h = head_dim / 2.
inline void Rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
                 uint32_t style) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = style == uint32_t(format::RopeStyle::kHalf) ? i : 2 * i;
      const int b = style == uint32_t(format::RopeStyle::kHalf) ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos[i] - x1 * sin[i];
      v[b] = x1 * cos[i] + x0 * sin[i];
    }
  }
}

}  // namespace mobilellm::ref
