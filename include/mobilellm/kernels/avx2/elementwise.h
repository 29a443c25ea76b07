// AVX2 elementwise ops: embedding rows, int8 quantization, RMSNorm, SwiGLU's gate, add, RoPE, the
// f16 cache write. Every x86 table uses these.
#pragma once

#include "mobilellm/kernels/avx2/common.h"

namespace mobilellm::avx2 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

template <DType kW>
void RowToF32(const WeightView& w, int row, float* dst) {
  if constexpr (format::IsQuantized(uint32_t(kW))) {
    ref::RowToF32<kW>(w, row, dst);  // one row per token: not worth a SIMD twin
  } else {
    const int64_t base = int64_t(row) * w.cols;
    int i = 0;
    for (; i + 8 <= w.cols; i += 8) _mm256_storeu_ps(dst + i, Load8<kW>(w.data, base + i));
    for (; i < w.cols; ++i) dst[i] = ref::WeightAt<kW>(w.data, base + i);
  }
}

// Same arithmetic as ref::QuantizeQ8 (max, 127 / max as 1 / (max / 127), round half even), so
// the int8 values are identical.
inline void QuantizeQ8(const float* x, int n, int8_t* q, float* d) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int b = 0; b < n / 32; ++b) {
    __m256 v[4], mx = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + b * 32 + j * 8);
      mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
    }
    const float amax = HMax(mx), scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    d[b] = scale;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], vinv)),
                  i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], vinv));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], vinv)),
                  i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], vinv));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * 32), p);
  }
}

inline void RmsNorm(const float* x, const float* w, int n, float eps, float* out) {
  const float inv = 1.0f / std::sqrt(Dot(x, x, n) / float(n) + eps);
  const __m256 vinv = _mm256_set1_ps(inv);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(v, _mm256_loadu_ps(w + i)));
  }
  for (; i < n; ++i) out[i] = (x[i] * inv) * w[i];
}

inline void SiluMul(float* gate, const float* up, int n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 s =
        _mm256_div_ps(g, _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  ref::SiluMul(gate + i, up + i, n - i);
}

inline void Add(float* y, const float* x, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

inline void Rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
                 uint32_t style) {
  const int half = head_dim / 2;
  if (style != uint32_t(format::RopeStyle::kHalf) || half % 8 != 0) {
    ref::Rope(x, n_heads, head_dim, cos, sin, style);
    return;
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < half; i += 8) {
      const __m256 x0 = _mm256_loadu_ps(v + i), x1 = _mm256_loadu_ps(v + i + half);
      const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
      _mm256_storeu_ps(v + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
      _mm256_storeu_ps(v + i + half, _mm256_fmadd_ps(x1, c, _mm256_mul_ps(x0, s)));
    }
  }
}

// F16C's conversion rounds to nearest even like F32ToF16 (NaN payloads aside).
inline void ToF16(const float* x, int n, uint16_t* out) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) out[i] = F32ToF16(x[i]);
}

}  // namespace
}  // namespace mobilellm::avx2
