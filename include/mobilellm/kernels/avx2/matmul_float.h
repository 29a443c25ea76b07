// AVX2 matmuls with float weights (f32, f16, bf16): the decode GEMV and the 4 x 2 prefill tiles.
#pragma once

#include "mobilellm/kernels/avx2/common.h"

namespace mobilellm::avx2 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// Row r of float weights dotted with x, 32 columns a step in four FMA chains.
template <DType kW>
inline float RowDot(const WeightView& wv, const float* x, int r) {
  const int cols = wv.cols, k32 = cols & ~31;
  const int64_t w0 = int64_t(r) * cols;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int k = 0;
  for (; k < k32; k += 32) {
    a0 = _mm256_fmadd_ps(Load8<kW>(wv.data, w0 + k), _mm256_loadu_ps(x + k), a0);
    a1 = _mm256_fmadd_ps(Load8<kW>(wv.data, w0 + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    a2 = _mm256_fmadd_ps(Load8<kW>(wv.data, w0 + k + 16), _mm256_loadu_ps(x + k + 16), a2);
    a3 = _mm256_fmadd_ps(Load8<kW>(wv.data, w0 + k + 24), _mm256_loadu_ps(x + k + 24), a3);
  }
  for (; k + 8 <= cols; k += 8)
    a0 = _mm256_fmadd_ps(Load8<kW>(wv.data, w0 + k), _mm256_loadu_ps(x + k), a0);
  float s = HSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; k < cols; ++k) s += x[k] * ref::WeightAt<kW>(wv.data, w0 + k);
  return s;
}

// Float weights, decode (one token): the range's rows in four quarters, one row of each at a
// time, so the weights are four sequential streams. A core with one stream keeps too few lines in
// flight to reach its share of DRAM bandwidth (AMD Zen 4: ~14 GB/s); four reach ~20 GB/s, eight
// no more. (Four rows in a row, as in GemmTiles4x2, are another thing: streams one row apart,
// which the prefetchers follow badly.) x stays in L1.
template <DType kW>
void Gemv(const MatmulInput& in, const WeightView& wv, int r0, int r1, float* y, int /*y_stride*/) {
  constexpr int kStreams = 4;
  const float* x = in.x;
  const int cols = wv.cols, k8 = cols & ~7, quarter = (r1 - r0) / kStreams;
  for (int r = r0; r < r0 + quarter; ++r) {
    int64_t w[kStreams];
    __m256 acc[kStreams];
    for (int s = 0; s < kStreams; ++s) {
      w[s] = int64_t(r + s * quarter) * cols;
      acc[s] = _mm256_setzero_ps();
    }
    for (int k = 0; k < k8; k += 8) {
      const __m256 xk = _mm256_loadu_ps(x + k);
      for (int s = 0; s < kStreams; ++s)
        acc[s] = _mm256_fmadd_ps(Load8<kW>(wv.data, w[s] + k), xk, acc[s]);
    }
    for (int s = 0; s < kStreams; ++s) {
      float sum = HSum(acc[s]);
      for (int k = k8; k < cols; ++k) sum += x[k] * ref::WeightAt<kW>(wv.data, w[s] + k);
      y[r + s * quarter] = sum;
    }
  }
  for (int r = r0 + kStreams * quarter; r < r1; ++r) y[r] = RowDot<kW>(wv, x, r);
}

// Float weights, prefill: tiles of 4 weight rows x 2 tokens, so each weight vector loaded (and
// converted) once serves two tokens and each activation vector serves four rows.
template <DType kW>
void GemmTiles4x2(const MatmulInput& in, const WeightView& wv, int r0, int r1, float* y,
                  int y_stride) {
  const void* w = wv.data;
  const int cols = wv.cols, n_tokens = in.n_tokens, k8 = cols & ~7;
  constexpr int kElem = kW == DType::kF32 ? 4 : 2, kPerLine = 64 / kElem;
  const float* x = in.x;
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const int64_t w0 = int64_t(r) * cols;
    const bool prefetch = r + 8 <= r1;
    const char* ahead = static_cast<const char*>(w) + (w0 + 4 * int64_t(cols)) * kElem;
    int t = 0;
    for (; t + 2 <= n_tokens; t += 2) {
      const float* xa = x + int64_t(t) * cols;
      const float* xb = xa + cols;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (int k = 0; k < k8; k += 8) {
        if (t == 0 && prefetch && k % kPerLine == 0)
          PrefetchTile(ahead, int64_t(k) * kElem, int64_t(cols) * kElem);
        const __m256 va = _mm256_loadu_ps(xa + k), vb = _mm256_loadu_ps(xb + k);
        const __m256 q0 = Load8<kW>(w, w0 + k), q1 = Load8<kW>(w, w0 + cols + k);
        const __m256 q2 = Load8<kW>(w, w0 + 2 * cols + k), q3 = Load8<kW>(w, w0 + 3 * cols + k);
        a0 = _mm256_fmadd_ps(q0, va, a0), b0 = _mm256_fmadd_ps(q0, vb, b0);
        a1 = _mm256_fmadd_ps(q1, va, a1), b1 = _mm256_fmadd_ps(q1, vb, b1);
        a2 = _mm256_fmadd_ps(q2, va, a2), b2 = _mm256_fmadd_ps(q2, vb, b2);
        a3 = _mm256_fmadd_ps(q3, va, a3), b3 = _mm256_fmadd_ps(q3, vb, b3);
      }
      float sa[4] = {HSum(a0), HSum(a1), HSum(a2), HSum(a3)};
      float sb[4] = {HSum(b0), HSum(b1), HSum(b2), HSum(b3)};
      for (int k = k8; k < cols; ++k) {
        for (int i = 0; i < 4; ++i) {
          const float wv_ = ref::WeightAt<kW>(w, w0 + i * cols + k);
          sa[i] += xa[k] * wv_, sb[i] += xb[k] * wv_;
        }
      }
      for (int i = 0; i < 4; ++i) {
        y[int64_t(t) * y_stride + r + i] = sa[i];
        y[int64_t(t + 1) * y_stride + r + i] = sb[i];
      }
    }
    for (; t < n_tokens; ++t) {
      const float* xa = x + int64_t(t) * cols;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int k = 0; k < k8; k += 8) {
        if (t == 0 && prefetch && k % kPerLine == 0)
          PrefetchTile(ahead, int64_t(k) * kElem, int64_t(cols) * kElem);
        const __m256 va = _mm256_loadu_ps(xa + k);
        a0 = _mm256_fmadd_ps(Load8<kW>(w, w0 + k), va, a0);
        a1 = _mm256_fmadd_ps(Load8<kW>(w, w0 + cols + k), va, a1);
        a2 = _mm256_fmadd_ps(Load8<kW>(w, w0 + 2 * cols + k), va, a2);
        a3 = _mm256_fmadd_ps(Load8<kW>(w, w0 + 3 * cols + k), va, a3);
      }
      float sa[4] = {HSum(a0), HSum(a1), HSum(a2), HSum(a3)};
      for (int k = k8; k < cols; ++k) {
        for (int i = 0; i < 4; ++i) sa[i] += xa[k] * ref::WeightAt<kW>(w, w0 + i * cols + k);
      }
      for (int i = 0; i < 4; ++i) y[int64_t(t) * y_stride + r + i] = sa[i];
    }
  }
  for (; r < r1; ++r) {  // leftover rows, one at a time
    const int64_t w0 = int64_t(r) * cols;
    for (int t = 0; t < n_tokens; ++t) {
      const float* xa = x + int64_t(t) * cols;
      __m256 a0 = _mm256_setzero_ps();
      for (int k = 0; k < k8; k += 8)
        a0 = _mm256_fmadd_ps(Load8<kW>(w, w0 + k), _mm256_loadu_ps(xa + k), a0);
      float s = HSum(a0);
      for (int k = k8; k < cols; ++k) s += xa[k] * ref::WeightAt<kW>(w, w0 + k);
      y[int64_t(t) * y_stride + r] = s;
    }
  }
}

}  // namespace
}  // namespace mobilellm::avx2
