// AVX2 matmuls with float weights (f32, f16, bf16): the decode GEMV, and for prefill the 16-row
// panels and the 4 x 2 tiles that take the rows left over.
#pragma once

#include <algorithm>
#include <type_traits>

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

// Float weights, prefill, 16 rows at a time (r1 - r0 a multiple of 16): as the quantized panel
// GEMM, lanes are rows. A panel of 16 rows x kK columns is converted to f32 and transposed into L1
// once (panel[k] = column k of the 16 rows); then per 6 tokens, each column costs two loads of
// it, six broadcasts of x and 12 FMAs into 12 accumulators (6 tokens x 16 rows) that need no
// horizontal sum. The FMA ports are the limit, not the f16 conversion or the loads: GemmTiles4x2
// converts each weight again for every pair of tokens and sums every dot horizontally.
// Columns in chunks of kK, the chunk outermost, so a chunk of x (kTokens x kK, 128 KB) stays in
// L2 across all the rows' panels.

// The 8 x 8 block of v (8 rows of 8 columns) transposed in place: v[j] = column j.
inline void Transpose8x8(__m256* v) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    v[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// panel[k][i] = w[r + i, k0 + k] as f32, for i < 16 and k < kc.
template <DType kW>
inline void PackFloatPanel(const WeightView& wv, int r, int k0, int kc, float (*panel)[16]) {
  const int64_t cols = wv.cols;
  int k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int h = 0; h < 16; h += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) v[i] = Load8<kW>(wv.data, (r + h + i) * cols + k0 + k);
      Transpose8x8(v);
      for (int j = 0; j < 8; ++j) _mm256_store_ps(panel[k + j] + h, v[j]);
    }
  for (; k < kc; ++k)
    for (int i = 0; i < 16; ++i) panel[k][i] = ref::WeightAt<kW>(wv.data, (r + i) * cols + k0 + k);
}

// y[t, 0..16) (+)= sum over k < kc of panel[k] * x[t, k], for the kT tokens from x and y (rows
// `x_stride` and `y_stride` apart); `add` for every column chunk after the first.
template <int kT>
inline void PanelTokens(const float (*panel)[16], int kc, const float* x, int64_t x_stride,
                        float* y, int64_t y_stride, bool add) {
  __m256 acc[kT][2];
  for (int j = 0; j < kT; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(panel[k]), w1 = _mm256_load_ps(panel[k] + 8);
    for (int j = 0; j < kT; ++j) {
      const __m256 xb = _mm256_broadcast_ss(x + j * x_stride + k);
      acc[j][0] = _mm256_fmadd_ps(w0, xb, acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps(w1, xb, acc[j][1]);
    }
  }
  for (int j = 0; j < kT; ++j)
    for (int h = 0; h < 2; ++h) {
      float* out = y + j * y_stride + 8 * h;
      _mm256_storeu_ps(out, add ? _mm256_add_ps(acc[j][h], _mm256_loadu_ps(out)) : acc[j][h]);
    }
}

template <DType kW>
void GemmPanelsFloat(const MatmulInput& in, const WeightView& wv, int r0, int r1, float* y,
                     int y_stride) {
  constexpr int kK = 256, kTokens = 128, kT = 6;
  alignas(32) float panel[kK][16];  // 16 KB
  const int cols = wv.cols;
  for (int t0 = 0; t0 < in.n_tokens; t0 += kTokens) {
    const int t1 = std::min(in.n_tokens, t0 + kTokens);
    for (int k0 = 0; k0 < cols; k0 += kK) {
      const int kc = std::min(kK, cols - k0);
      for (int r = r0; r < r1; r += 16) {
        PackFloatPanel<kW>(wv, r, k0, kc, panel);
        const auto run = [&](auto tokens, int t) {
          PanelTokens<decltype(tokens)::value>(panel, kc, in.x + int64_t(t) * cols + k0, cols,
                                               y + int64_t(t) * y_stride + r, y_stride, k0 > 0);
        };
        int t = t0;  // 6 tokens at a time, then 4, 2 and 1 of those left
        for (; t + kT <= t1; t += kT) run(std::integral_constant<int, kT>{}, t);
        if (t + 4 <= t1) run(std::integral_constant<int, 4>{}, t), t += 4;
        if (t + 2 <= t1) run(std::integral_constant<int, 2>{}, t), t += 2;
        if (t < t1) run(std::integral_constant<int, 1>{}, t);
      }
    }
  }
}

}  // namespace
}  // namespace mobilellm::avx2
