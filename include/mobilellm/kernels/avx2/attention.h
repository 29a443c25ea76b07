// AVX2 attention: one head at a time, the head in registers.
#pragma once

#include "mobilellm/kernels/avx2/common.h"

namespace mobilellm::avx2 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// Attention for a head of kH x 8 values. Scores a key block (16 positions) at a time: for each
// dimension d, q[d] times two registers of 8 positions, in four accumulator pairs (d mod 4) so
// the FMA chains overlap, and no horizontal sums. Then the softmax, then the values with the
// output in kH registers while the rows stream past.
template <int kH, DType kKV>
void AttendHead(const float* q, const void* keys, const void* values, int n_keys, int stride,
                float scale, float* scores, float* out, float* lse) {
  constexpr int hd = 8 * kH;
  __m256 acc[kH];
  const __m256 scale8 = _mm256_set1_ps(scale);
  for (int p0 = 0; p0 < n_keys; p0 += kKeyBlock) {
    const int64_t block = KeyIndex(p0, 0, hd);
    __m256 lo[4], hi[4];
    for (int j = 0; j < 4; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 4) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256 qd = _mm256_broadcast_ss(q + d + j);
        const int64_t at = block + int64_t(d + j) * kKeyBlock;
        lo[j] = _mm256_fmadd_ps(qd, Load8<kKV>(keys, at), lo[j]);
        hi[j] = _mm256_fmadd_ps(qd, Load8<kKV>(keys, at + 8), hi[j]);
      }
    }
    const __m256 s_lo = _mm256_mul_ps(
        _mm256_add_ps(_mm256_add_ps(lo[0], lo[1]), _mm256_add_ps(lo[2], lo[3])), scale8);
    const __m256 s_hi = _mm256_mul_ps(
        _mm256_add_ps(_mm256_add_ps(hi[0], hi[1]), _mm256_add_ps(hi[2], hi[3])), scale8);
    if (p0 + kKeyBlock <= n_keys) {
      _mm256_storeu_ps(scores + p0, s_lo);
      _mm256_storeu_ps(scores + p0 + 8, s_hi);
    } else {  // a partial last block: its other lanes are not positions of this call
      alignas(32) float tmp[kKeyBlock];
      _mm256_store_ps(tmp, s_lo);
      _mm256_store_ps(tmp + 8, s_hi);
      std::memcpy(scores + p0, tmp, sizeof(float) * size_t(n_keys - p0));
    }
  }
  __m256 top8 = _mm256_set1_ps(-INFINITY);
  int p = 0;
  for (; p + 8 <= n_keys; p += 8) top8 = _mm256_max_ps(top8, _mm256_loadu_ps(scores + p));
  __m128 max4 = _mm_max_ps(_mm256_castps256_ps128(top8), _mm256_extractf128_ps(top8, 1));
  max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
  float max = _mm_cvtss_f32(_mm_max_ss(max4, _mm_movehdup_ps(max4)));
  for (; p < n_keys; ++p) max = scores[p] > max ? scores[p] : max;
  // exp(s - max), 8 at a time with the polynomial Exp.
  __m256 sum8 = _mm256_setzero_ps();
  const __m256 max8 = _mm256_set1_ps(max);
  p = 0;
  for (; p + 8 <= n_keys; p += 8) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(scores + p), max8));
    _mm256_storeu_ps(scores + p, e);
    sum8 = _mm256_add_ps(sum8, e);
  }
  float sum = HSum(sum8);
  for (; p < n_keys; ++p) sum += scores[p] = std::exp(scores[p] - max);
  for (int i = 0; i < kH; ++i) acc[i] = _mm256_setzero_ps();
  for (int p = 0; p < n_keys; ++p) {
    const int64_t v = int64_t(p) * stride;
    const __m256 w = _mm256_set1_ps(scores[p]);
    for (int i = 0; i < kH; ++i) acc[i] = _mm256_fmadd_ps(w, Load8<kKV>(values, v + 8 * i), acc[i]);
  }
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for (int i = 0; i < kH; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
  if (lse) *lse = max + std::log(sum);
}

// One head of kH x 8 values (AttendHead), with AttendOne's signature.
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

}  // namespace
}  // namespace mobilellm::avx2
