// AVX-512 grouped-query attention for head dim 64: the query heads that share a KV head in one
// pass over the cache (streamed, online softmax) or two.
#pragma once

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "kernels/avx512 needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

#include <cstring>

#include "mobilellm/kernels/avx2.h"

namespace mobilellm::avx512 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// GCC 12's AVX-512 headers implement cvtph_ps, castps512_ps256 and extractf64x4 with a
// self-initialised "undefined" register, which -Wuninitialized flags once these are inlined into
// the lambdas below at -O2 with sanitizers. A false positive in the system header; silenced here
// only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// 16 cached values at p + i as f32.
template <DType kKV>
inline __m512 Load16(const void* p, int64_t i) {
  if constexpr (kKV == DType::kF16) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  }
}

// The kQ heads' scores for the key block at p0 (16 positions, one zmm a dimension), scaled, in
// s[h]: per dimension, one load and kQ FMAs with q[h][d] broadcast from memory, four accumulators
// a head (d mod 4) so the FMA chains overlap, no horizontal sums. On the way it prefetches
// n_rows rows of row_bytes from `rows` (value rows the caller wants soon), one a step: a burst of
// 16 fills the miss queues. Lanes past the last key hold whatever the cache holds there.
template <int kQ, DType kKV>
inline void ScoreKeyBlock(const float* q, const void* keys, int p0, __m512 scale, const char* rows,
                          int n_rows, int64_t row_bytes, __m512* s) {
  constexpr int kElem = kKV == DType::kF16 ? 2 : 4;
  const int64_t block = KeyIndex(p0, 0, 64);
  __m512 acc[kQ][4];
#pragma GCC unroll 4
  for (int h = 0; h < kQ; ++h)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[h][j] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int d = 0; d < 64; d += 4) {
    if (d / 4 < n_rows)
      for (int o = 0; o < 64 * kElem; o += 64)
        _mm_prefetch(rows + d / 4 * row_bytes + o, _MM_HINT_T0);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512 k = Load16<kKV>(keys, block + int64_t(d + j) * kKeyBlock);
#pragma GCC unroll 4
      for (int h = 0; h < kQ; ++h)
        acc[h][j] = _mm512_fmadd_ps(_mm512_set1_ps(q[64 * h + d + j]), k, acc[h][j]);
    }
  }
  for (int h = 0; h < kQ; ++h)
    s[h] = _mm512_mul_ps(
        _mm512_add_ps(_mm512_add_ps(acc[h][0], acc[h][1]), _mm512_add_ps(acc[h][2], acc[h][3])),
        scale);
}

// acc[h] += w[h * w_stride] * the value row at element v, for the kQ heads: the row is loaded
// (and converted from f16) once for all of them.
template <int kQ, DType kKV>
inline void AddValueRow(const void* values, int64_t v, const float* w, int w_stride,
                        __m512 (*acc)[4]) {
  const __m512 v0 = Load16<kKV>(values, v), v1 = Load16<kKV>(values, v + 16),
               v2 = Load16<kKV>(values, v + 32), v3 = Load16<kKV>(values, v + 48);
  for (int h = 0; h < kQ; ++h) {
    const __m512 wh = _mm512_set1_ps(w[h * w_stride]);
    acc[h][0] = _mm512_fmadd_ps(wh, v0, acc[h][0]);
    acc[h][1] = _mm512_fmadd_ps(wh, v1, acc[h][1]);
    acc[h][2] = _mm512_fmadd_ps(wh, v2, acc[h][2]);
    acc[h][3] = _mm512_fmadd_ps(wh, v3, acc[h][3]);
  }
}

// kQ query heads of 64 values that share a key/value head, in two passes: the scores of every
// key block (ScoreKeyBlock) and their softmax, then the values. Each cached key and value is
// loaded (and converted from f16) once for all kQ heads.
template <int kQ, DType kKV>
void AttendGroup64(const float* q, const void* keys, const void* values, int n_keys, int stride,
                   float scale, float* scores, float* out, float* lse) {
  // The cache comes from DRAM (the weights have streamed through since the last step): each
  // block's 16 value rows are fetched while its keys are scored, so the value pass hits cache.
  constexpr int kElem = kKV == DType::kF16 ? 2 : 4;
  const __m512 scale16 = _mm512_set1_ps(scale);
  __m512 top[kQ];
  for (int h = 0; h < kQ; ++h) top[h] = _mm512_set1_ps(-INFINITY);
  const int64_t row_bytes = int64_t(stride) * kElem;
  for (int p0 = 0; p0 < n_keys; p0 += kKeyBlock) {
    const int n = std::min(kKeyBlock, n_keys - p0);
    __m512 sc[kQ];
    ScoreKeyBlock<kQ, kKV>(q, keys, p0, scale16, static_cast<const char*>(values) + p0 * row_bytes,
                           n, row_bytes, sc);
    const __mmask16 valid = __mmask16((1u << n) - 1);
    for (int h = 0; h < kQ; ++h) {
      _mm512_mask_storeu_ps(scores + h * n_keys + p0, valid, sc[h]);
      top[h] = _mm512_mask_max_ps(top[h], valid, top[h], sc[h]);
    }
  }
  float max[kQ];
  for (int h = 0; h < kQ; ++h) max[h] = _mm512_reduce_max_ps(top[h]);
  // Softmax numerators and sums per head, then one pass over the values for all heads.
  float inv[kQ];
  for (int h = 0; h < kQ; ++h) {
    float* sh = scores + h * n_keys;
    const __m256 m8 = _mm256_set1_ps(max[h]);
    __m256 sum8 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n_keys; i += 8) {
      const __m256 e = avx2::Exp(_mm256_sub_ps(_mm256_loadu_ps(sh + i), m8));
      _mm256_storeu_ps(sh + i, e);
      sum8 = _mm256_add_ps(sum8, e);
    }
    float sum = avx2::HSum(sum8);
    for (; i < n_keys; ++i) sum += sh[i] = std::exp(sh[i] - max[h]);
    inv[h] = 1.0f / sum;
    if (lse) lse[h] = max[h] + std::log(sum);
  }
  __m512 acc[kQ][4];
  for (int h = 0; h < kQ; ++h)
    for (int i = 0; i < 4; ++i) acc[h][i] = _mm512_setzero_ps();
  for (int p = 0; p < n_keys; ++p)
    AddValueRow<kQ, kKV>(values, int64_t(p) * stride, scores + p, n_keys, acc);
  for (int h = 0; h < kQ; ++h)
    for (int i = 0; i < 4; ++i)
      _mm512_storeu_ps(out + 64 * h + 16 * i, _mm512_mul_ps(acc[h][i], _mm512_set1_ps(inv[h])));
}

// AttendGroup64 for long contexts, in one pass over the cache: each key block is scored
// (ScoreKeyBlock), its softmax numerators taken against the running maximum (online softmax: when
// the maximum rises, the sums so far are rescaled), and its 16 value rows added in, so keys and
// values stream by once, together. `scores` is not needed.
template <int kQ, DType kKV>
void AttendGroup64Streamed(const float* q, const void* keys, const void* values, int n_keys,
                           int stride, float scale, float* /*scores*/, float* out, float* lse) {
  constexpr int kElem = kKV == DType::kF16 ? 2 : 4;
  const __m512 scale16 = _mm512_set1_ps(scale), minus_inf = _mm512_set1_ps(-INFINITY);
  // The cache comes from DRAM (the weights have streamed through since the last step): the value
  // rows of the next block are fetched while this block's keys are scored, one row a step (a
  // burst of 16 would fill the miss queues), so its value pass finds them in cache.
  const auto value_row = [&](int p) {
    return static_cast<const char*>(values) + int64_t(p) * stride * kElem;
  };
  for (int r = 0; r < std::min(n_keys, kKeyBlock); ++r)
    for (int o = 0; o < 64 * kElem; o += 64) _mm_prefetch(value_row(r) + o, _MM_HINT_T0);
  float max[kQ];
  __m512 acc[kQ][4], sum[kQ];
  for (int h = 0; h < kQ; ++h) {
    max[h] = -INFINITY, sum[h] = _mm512_setzero_ps();
    for (int i = 0; i < 4; ++i) acc[h][i] = _mm512_setzero_ps();
  }
  for (int p0 = 0; p0 < n_keys; p0 += kKeyBlock) {
    const int n = std::min(kKeyBlock, n_keys - p0), next = std::min(kKeyBlock, n_keys - p0 - n);
    __m512 sc[kQ];
    ScoreKeyBlock<kQ, kKV>(q, keys, p0, scale16, value_row(p0 + kKeyBlock), next,
                           int64_t(stride) * kElem, sc);
    // Softmax numerators of the block, against the running maximum; the lanes past n_keys (a
    // partial last block) count as -inf and weigh nothing, whatever the cache holds there.
    const __mmask16 valid = __mmask16((1u << n) - 1);
    alignas(64) float weight[kQ][kKeyBlock];
    for (int h = 0; h < kQ; ++h) {
      const __m512 s = _mm512_mask_mov_ps(minus_inf, valid, sc[h]);
      const float top = std::max(max[h], _mm512_reduce_max_ps(s));
      if (top > max[h]) {
        if (max[h] != -INFINITY) {  // rescale what the earlier blocks added
          const __m512 c = _mm512_set1_ps(std::exp(max[h] - top));
          sum[h] = _mm512_mul_ps(sum[h], c);
          for (int i = 0; i < 4; ++i) acc[h][i] = _mm512_mul_ps(acc[h][i], c);
        }
        max[h] = top;
      }
      const __m512 x = _mm512_sub_ps(s, _mm512_set1_ps(top));
      const __m256 lo = avx2::Exp(_mm512_castps512_ps256(x)),
                   hi = avx2::Exp(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
      const __m512 e = _mm512_maskz_mov_ps(
          valid, _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                                                     _mm256_castps_pd(hi), 1)));
      sum[h] = _mm512_add_ps(sum[h], e);
      _mm512_store_ps(weight[h], e);
    }
    for (int i = 0; i < n; ++i)
      AddValueRow<kQ, kKV>(values, int64_t(p0 + i) * stride, &weight[0][i], kKeyBlock, acc);
  }
  for (int h = 0; h < kQ; ++h) {
    const float total = _mm512_reduce_add_ps(sum[h]);
    const __m512 inv = _mm512_set1_ps(1.0f / total);
    for (int i = 0; i < 4; ++i)
      _mm512_storeu_ps(out + 64 * h + 16 * i, _mm512_mul_ps(acc[h][i], inv));
    if (lse) lse[h] = max[h] + std::log(total);
  }
}

// kQ heads in one pass (kStreamed) or two.
template <int kQ, DType kKV, bool kStreamed>
void AttendGroup(const float* q, const void* keys, const void* values, int n_keys, int stride,
                 float scale, float* scores, float* out, float* lse) {
  if constexpr (kStreamed)
    AttendGroup64Streamed<kQ, kKV>(q, keys, values, n_keys, stride, scale, scores, out, lse);
  else
    AttendGroup64<kQ, kKV>(q, keys, values, n_keys, stride, scale, scores, out, lse);
}

// Head dim 64 (every MobileLLM v1 size) in groups of up to 4 heads.
template <DType kKV, bool kStreamed>
void AttendHd64(const float* q, int n_q, const void* keys, const void* values, int n_keys,
                int stride, int /*hd*/, float scale, float* scores, float* out, float* lse) {
  for (int h = 0; h < n_q;) {
    const int n = std::min(4, n_q - h);
    const float* qh = q + 64 * h;
    float *sh = scores + int64_t(h) * n_keys, *oh = out + 64 * h, *lh = lse ? lse + h : nullptr;
    switch (n) {
      case 4:
        AttendGroup<4, kKV, kStreamed>(qh, keys, values, n_keys, stride, scale, sh, oh, lh);
        break;
      case 3:
        AttendGroup<3, kKV, kStreamed>(qh, keys, values, n_keys, stride, scale, sh, oh, lh);
        break;
      case 2:
        AttendGroup<2, kKV, kStreamed>(qh, keys, values, n_keys, stride, scale, sh, oh, lh);
        break;
      default:
        AttendGroup<1, kKV, kStreamed>(qh, keys, values, n_keys, stride, scale, sh, oh, lh);
    }
    h += n;
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace
}  // namespace mobilellm::avx512
