// NEON attention: one head at a time, the head in registers.
#pragma once

#include "mobilellm/kernels/neon/common.h"

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// Attention for a head of kH x 4 values (f32 or f16 cache), query and output held in registers.
template <int kH, DType kKV>
void AttendHead(const float* q, const void* keys, const void* values, int n_keys, int stride,
                float scale, float* scores, float* out, float* lse) {
  constexpr int hd = 4 * kH;
  float32x4_t acc[kH];
  // Scores a key block (16 positions, four registers a dimension) at a time: q[d] times each,
  // in two accumulator sets (d even, d odd) so the FMA chains overlap; no horizontal sums.
  float max = -INFINITY;
  for (int p0 = 0; p0 < n_keys; p0 += kKeyBlock) {
    const int64_t block = KeyIndex(p0, 0, hd);
    float32x4_t a[2][4];
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 4; ++i) a[j][i] = vdupq_n_f32(0.0f);
    for (int d = 0; d < hd; d += 2) {
      for (int j = 0; j < 2; ++j) {
        const int64_t at = block + int64_t(d + j) * kKeyBlock;
        for (int i = 0; i < 4; ++i)
          a[j][i] = vfmaq_n_f32(a[j][i], Load4<kKV>(keys, at + 4 * i), q[d + j]);
      }
    }
    alignas(16) float s[kKeyBlock];
    for (int i = 0; i < 4; ++i)
      vst1q_f32(s + 4 * i, vmulq_n_f32(vaddq_f32(a[0][i], a[1][i]), scale));
    const int n = std::min(kKeyBlock, n_keys - p0);
    for (int i = 0; i < n; ++i) {
      scores[p0 + i] = s[i];
      max = s[i] > max ? s[i] : max;
    }
  }
  float sum = 0.0f;
  for (int p = 0; p < n_keys; ++p) sum += scores[p] = std::exp(scores[p] - max);
  for (int i = 0; i < kH; ++i) acc[i] = vdupq_n_f32(0.0f);
  for (int p = 0; p < n_keys; ++p) {
    const int64_t v = int64_t(p) * stride;
    for (int i = 0; i < kH; ++i)
      acc[i] = vfmaq_n_f32(acc[i], Load4<kKV>(values, v + 4 * i), scores[p]);
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < kH; ++i) vst1q_f32(out + 4 * i, vmulq_n_f32(acc[i], inv));
  if (lse) *lse = max + std::log(sum);
}

// One head of kH x 4 values (AttendHead), with AttendOne's signature.
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
}  // namespace mobilellm::neon
