// AVX2 + FMA + F16C kernels. Included only by src/kernels/avx2.cpp, the one file compiled with
// those flags, so the rest of the binary runs on any x86-64 CPU and this table is picked at run
// time. Each function has its twin in ref.h; tests hold them together.
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "kernels/avx2.h needs -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "mobilellm/kernels.h"
#include "mobilellm/kernels/ref.h"

namespace mobilellm::avx2 {
// Internal linkage: every kernel TU gets its own copy compiled with its own ISA flags. Shared
// inline or template code would be merged across TUs by the linker, and an AVX-512 build of a
// function could end up serving the portable table (SIGILL on older CPUs).
namespace {

inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float HMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 weights at p + i as f32.
template <DType kW>
inline __m256 Load8(const void* p, int64_t i) {
  if constexpr (kW == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (kW == DType::kF16) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    const __m128i b =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
  }
}

// exp(x) for x in [-87, 88], Cephes polynomial: relative error < 2e-7.
inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// Software prefetch distance for streaming weights: one 4-row tile ahead. The L2 streamer alone
// does not keep enough misses in flight for four interleaved short rows (shared/limits: f16 GEMV
// reaches ~50% of DRAM bandwidth without it, ~88% with it).
inline void PrefetchTile(const void* tile_ahead, int64_t byte_offset, int64_t row_bytes) {
  const char* p = static_cast<const char*>(tile_ahead) + byte_offset;
  _mm_prefetch(p, _MM_HINT_T0);
  _mm_prefetch(p + row_bytes, _MM_HINT_T0);
  _mm_prefetch(p + 2 * row_bytes, _MM_HINT_T0);
  _mm_prefetch(p + 3 * row_bytes, _MM_HINT_T0);
}

// Float weights, decode (one token): one row at a time, so the weights are a single sequential
// stream -- what hardware prefetchers follow best (on AMD Zen 4 the 4-row tiles below reach only
// ~45% of DRAM bandwidth; one stream reaches ~75-90%). x stays in L1.
template <DType kW>
void Gemv(const MatmulInput& in, const WeightView& wv, int r0, int r1, float* y, int /*y_stride*/) {
  const float* x = in.x;
  const int cols = wv.cols, k32 = cols & ~31;
  for (int r = r0; r < r1; ++r) {
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
    y[r] = s;
  }
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

// The 32 quants of block b of a row, as int8 in element order (q4_0 unpacked to [-8, 7]).
template <DType kW>
inline __m256i LoadBlock(const uint8_t* row, int b) {
  if constexpr (kW == DType::kQ8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32));
  } else {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
    const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
  }
}

// sum(x * w) over 32 int8 pairs, as 8 int32 lanes: maddubs needs an unsigned operand, so it
// multiplies |x| by w carrying x's sign (no i16 overflow: 2 * 127 * 128 < 32768).
inline __m256i DotBlock(__m256i x_abs, __m256i x, __m256i w) {
  const __m256i p16 = _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(w, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The f16 scales of a tile two tiles ahead: TileScales reads them at the start of a tile, before
// any arithmetic could hide a miss, so every line is requested early.
inline void PrefetchScales(const uint16_t* scales, int64_t n) {
  const char* p = reinterpret_cast<const char*>(scales);
  for (int64_t o = 0; o < 2 * n; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// Combined block scales for a 4-row tile and one token: s[i][j] = dW[r + i, b0 + j] * dx[b0 + j]
// for j < n, computed 8 at a time (f16 -> f32 with F16C), so the block loop only broadcasts.
inline void TileScales(const uint16_t* scales, int64_t nb, int r, const float* xd, int b0, int n,
                       float (*s)[64]) {
  for (int i = 0; i < 4; ++i) {
    const uint16_t* d = scales + int64_t(r + i) * nb + b0;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + j)));
      _mm256_storeu_ps(&s[i][j], _mm256_mul_ps(dw, _mm256_loadu_ps(xd + b0 + j)));
    }
    for (; j < n; ++j) s[i][j] = _cvtsh_ss(d[j]) * xd[b0 + j];
  }
}

// Row r's combined block scales dW[r, b] * dx[b] for all nb blocks, 8 at a time.
inline void RowScales(const uint16_t* d, const float* xd, int nb, float* s) {
  int b = 0;
  for (; b + 8 <= nb; b += 8) {
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + b)));
    _mm256_storeu_ps(s + b, _mm256_mul_ps(dw, _mm256_loadu_ps(xd + b)));
  }
  for (; b < nb; ++b) s[b] = _cvtsh_ss(d[b]) * xd[b];
}

// Blocks per row that the integer kernels keep per-block values for on the stack (cols <= 8192);
// wider rows take the reference kernel.
constexpr int kMaxBlocks = 256;

// The sum of 32 int8 activations (a block), exactly.
inline int32_t BlockSum(const int8_t* x32) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x32));
  // maddubs(1, x) sums pairs (unsigned 1 x signed x); madd with 1 sums to int32 lanes.
  const __m256i s =
      _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), x), _mm256_set1_epi16(1));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(h);
}

// x_sum[b] = sum of the 32 int8 activations of block b (as float; exact).
inline void BlockSums(const int8_t* xq, int nb, float* x_sum) {
  for (int b = 0; b < nb; ++b) x_sum[b] = float(BlockSum(xq + b * 32));
}

// One q4_0 row: the nibbles q in [0, 15] go straight into maddubs as its unsigned operand, and
// sum((q - 8) x) = sum(q x) - 8 sum(x) is corrected once per row with the activations' block sums,
// so the block loop needs neither a subtraction nor a sign fix-up.
inline float GemvRowQ4(const uint8_t* q, const int8_t* xq, const float* s, const float* x_sum,
                       int nb) {
  const __m256i m = _mm256_set1_epi8(15), one16 = _mm256_set1_epi16(1);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, c = a0;
  int b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * 16));
    const __m256i lo = _mm256_and_si256(bytes, m),
                  hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m);
    const __m256i w0 = _mm256_permute2x128_si256(lo, hi, 0x20),
                  w1 = _mm256_permute2x128_si256(lo, hi, 0x31);
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32 + 32));
    const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(w0, x0), one16);
    const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(w1, x1), one16);
    a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_broadcast_ss(s + b), a0);
    a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_broadcast_ss(s + b + 1), a1);
  }
  float sum = HSum(_mm256_add_ps(a0, a1)), corr = 0.0f;
  for (; b < nb; ++b) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * 16));
    const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
    const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set_m128i(hi, lo), x0), one16);
    sum += HSum(_mm256_cvtepi32_ps(p0)) * s[b];
  }
  int k = 0;
  for (; k + 8 <= nb; k += 8)
    c = _mm256_fmadd_ps(_mm256_loadu_ps(s + k), _mm256_loadu_ps(x_sum + k), c);
  corr = HSum(c);
  for (; k < nb; ++k) corr += s[k] * x_sum[k];
  return sum - 8.0f * corr;
}

// Decode with quantized weights: one row at a time, one sequential stream (see Gemv). Rows of up
// to kMaxBlocks blocks: the scales sit in a stack array.
template <DType kW>
void GemvQ(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int /*y_stride*/) {
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16;
  const int nb = w.cols / format::kBlock;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  alignas(32) float s[kMaxBlocks], x_sum[kMaxBlocks];
  if constexpr (kW == DType::kQ4_0) BlockSums(in.q, nb, x_sum);
  for (int r = r0; r < r1; ++r) {
    const uint8_t* q = quants + int64_t(r) * nb * kBlockBytes;
    RowScales(scales + int64_t(r) * nb, in.d, nb, s);
    if constexpr (kW == DType::kQ4_0) {
      y[r] = GemvRowQ4(q, in.q, s, x_sum, nb);
      continue;
    }
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in.q + b * 32));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in.q + b * 32 + 32));
      const __m256i p0 = DotBlock(_mm256_sign_epi8(x0, x0), x0, LoadBlock<kW>(q, b));
      const __m256i p1 = DotBlock(_mm256_sign_epi8(x1, x1), x1, LoadBlock<kW>(q, b + 1));
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_broadcast_ss(s + b), a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_broadcast_ss(s + b + 1), a1);
    }
    if (b < nb) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in.q + b * 32));
      const __m256i p0 = DotBlock(_mm256_sign_epi8(x0, x0), x0, LoadBlock<kW>(q, b));
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_broadcast_ss(s + b), a0);
    }
    y[r] = HSum(_mm256_add_ps(a0, a1));
  }
}

// Quantized weights x int8 activations in tiles of 4 rows (and single leftover rows), any row
// width, prefetching the next tile. Blocks are processed in chunks of 64 so the tile's combined
// scales fit a small stack array. The rows prefill's 16-row panels leave over, and rows too wide
// for the other kernels.
template <DType kW>
void GemmTiles4(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16, kChunk = 64;
  const int cols = w.cols, nb = cols / format::kBlock;
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  alignas(32) float s[4][kChunk];
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint8_t* q0 = quants + int64_t(r) * row_bytes;
    const bool prefetch = r + 8 <= r1;
    if (r + 12 <= r1) PrefetchScales(scales + int64_t(r + 8) * nb, 4 * nb);
    for (int t = 0; t < in.n_tokens; ++t) {
      const int8_t* xq = in.q + int64_t(t) * cols;
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
      for (int b0 = 0; b0 < nb; b0 += kChunk) {
        const int n = std::min(kChunk, nb - b0);
        TileScales(scales, nb, r, in.d + int64_t(t) * nb, b0, n, s);
        for (int j = 0; j < n; ++j) {
          const int b = b0 + j;
          if (t == 0 && prefetch && (b * kBlockBytes) % 64 == 0)
            PrefetchTile(q0 + 4 * row_bytes, b * kBlockBytes, row_bytes);
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
          const __m256i x_abs = _mm256_sign_epi8(x, x);
          for (int i = 0; i < 4; ++i) {
            const __m256i p = DotBlock(x_abs, x, LoadBlock<kW>(q0 + i * row_bytes, b));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&s[i][j]), acc[i]);
          }
        }
      }
      for (int i = 0; i < 4; ++i) y[int64_t(t) * y_stride + r + i] = HSum(acc[i]);
    }
  }
  for (; r < r1; ++r) {
    const uint8_t* q = quants + int64_t(r) * row_bytes;
    for (int t = 0; t < in.n_tokens; ++t) {
      const int8_t* xq = in.q + int64_t(t) * cols;
      __m256 acc = _mm256_setzero_ps();
      for (int b = 0; b < nb; ++b) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
        const __m256i p = DotBlock(_mm256_sign_epi8(x, x), x, LoadBlock<kW>(q, b));
        const float d = _cvtsh_ss(scales[int64_t(r) * nb + b]) * in.d[int64_t(t) * nb + b];
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), acc);
      }
      y[int64_t(t) * y_stride + r] = HSum(acc);
    }
  }
}

// Group g (4 elements) of rows 8h..8h+7 of a stored panel block (format.h): q8_0 as stored,
// q4_0 as the nibble q + 8.
template <DType kW>
inline __m256i PanelGroup(const uint8_t* q, int g, int h) {
  if constexpr (kW == DType::kQ8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * g + 32 * h));
  } else {
    const __m256i bytes =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * (g / 2) + 32 * h));
    return _mm256_and_si256(g % 2 == 0 ? bytes : _mm256_srli_epi16(bytes, 4), _mm256_set1_epi8(15));
  }
}

// One block of 16 rows in panel order against its 32 int8 activations xb: the int32 dot products
// of rows 0-7 (*i0) and 8-15 (*i1). wg(g, h) yields group g of rows 8h..8h+7. 4 activation bytes,
// broadcast once, serve both halves. q4_0 nibbles are maddubs's unsigned operand as stored (q + 8;
// the offset, x_start = -8 * sum x, seeds the accumulator) and a block's 8 products fit int16
// before one madd; q8_0 uses the |x|, sign(w, x) form (x_start unused), with |x| read from
// xb_abs when the caller made it once for many rows (prefill), else computed here.
template <DType kW, typename GroupFn>
inline void PanelBlockDot(const GroupFn& wg, const int8_t* xb, int32_t x_start, __m256i* i0,
                          __m256i* i1, const int8_t* xb_abs = nullptr) {
  if constexpr (kW == DType::kQ4_0) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    for (int g = 0; g < 8; ++g) {
      int32_t x4;
      std::memcpy(&x4, xb + 4 * g, 4);
      const __m256i xv = _mm256_set1_epi32(x4);
      s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(wg(g, 0), xv));
      s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(wg(g, 1), xv));
    }
    const __m256i start = _mm256_set1_epi32(x_start), one16 = _mm256_set1_epi16(1);
    *i0 = _mm256_add_epi32(start, _mm256_madd_epi16(s0, one16));
    *i1 = _mm256_add_epi32(start, _mm256_madd_epi16(s1, one16));
  } else {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (int g = 0; g < 8; ++g) {
      int32_t x4;
      std::memcpy(&x4, xb + 4 * g, 4);
      const __m256i xv = _mm256_set1_epi32(x4);
      __m256i xa;
      if (xb_abs) {
        int32_t a4;
        std::memcpy(&a4, xb_abs + 4 * g, 4);
        xa = _mm256_set1_epi32(a4);
      } else {
        xa = _mm256_sign_epi8(xv, xv);
      }
      a0 = _mm256_add_epi32(a0, DotBlock(xa, xv, wg(g, 0)));
      a1 = _mm256_add_epi32(a1, DotBlock(xa, xv, wg(g, 1)));
    }
    *i0 = a0;
    *i1 = a1;
  }
}

// Decode from panels (format.h): the weights stream by as stored, one sequential stream, and the
// float work (convert, scale, FMA) is shared by 8 rows instead of paid per row.
template <DType kW>
void GemvPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int /*y_stride*/) {
  const int nb = w.cols / format::kBlock, block_bytes = ref::PanelBlockBytes(w);
  alignas(32) int32_t x_start[kMaxBlocks];
  if constexpr (kW == DType::kQ4_0)
    for (int b = 0; b < nb; ++b) x_start[b] = -8 * BlockSum(in.q + b * 32);
  const uint8_t* block = ref::PanelBlock(w, r0, 0);  // one sequential stream: no prefetch needed
  for (int r = r0; r < r1; r += format::kPanelRows) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int b = 0; b < nb; ++b, block += block_bytes) {
      const uint8_t* q = block + 2 * format::kPanelRows;
      __m256i i0, i1;
      PanelBlockDot<kW>([q](int g, int h) { return PanelGroup<kW>(q, g, h); }, in.q + b * 32,
                        kW == DType::kQ4_0 ? x_start[b] : 0, &i0, &i1);
      const __m256 dx = _mm256_set1_ps(in.d[b]);
      const __m128i* d16 = reinterpret_cast<const __m128i*>(block);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0),
                             _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(d16)), dx), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1),
                             _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(d16 + 1)), dx), acc1);
    }
    _mm256_storeu_ps(y + r, acc0);
    _mm256_storeu_ps(y + r + 8, acc1);
  }
}

// Prefill, 16 rows at a time (r0 and r1 multiples of 16): a panel of 16 rows x 32 blocks is put
// in panel order (format.h) in L1 once per group of 64 tokens -- gathered from planar rows
// (kStored false), or from a file in the panel layout with only the q4_0 nibbles split -- so that
// each int32 lane belongs to one row (panel[j][g][h] = bytes 4g..4g+3 of block j of rows
// 8h..8h+7); see PanelBlockDot.
template <DType kW, bool kStored>
void GemmPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16, kChunk = 32, kGroup = 64;
  const int cols = w.cols, nb = cols / format::kBlock;
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  alignas(32) uint32_t panel[kChunk][8][2][8];  // 16 KB
  alignas(32) float row_scale[kChunk][2][8];
  alignas(32) int32_t x_start[kW == DType::kQ4_0 ? kGroup : 1][kMaxBlocks];
  for (int t0 = 0; t0 < in.n_tokens; t0 += kGroup) {
    const int t1 = std::min(in.n_tokens, t0 + kGroup);
    if constexpr (kW == DType::kQ4_0) {
      for (int t = t0; t < t1; ++t)
        for (int b = 0; b < nb; ++b)
          x_start[t - t0][b] = -8 * BlockSum(in.q + int64_t(t) * cols + int64_t(b) * 32);
    }
    for (int r = r0; r < r1; r += 16) {
      for (int b0 = 0; b0 < nb; b0 += kChunk) {
        const int n = std::min(kChunk, nb - b0);
        for (int j = 0; kStored && j < n; ++j) {
          const uint8_t* q = ref::PanelQuants(w, r, b0 + j);
          for (int g = 0; g < 8; ++g)
            for (int h = 0; h < 2; ++h)
              _mm256_store_si256(reinterpret_cast<__m256i*>(panel[j][g][h]),
                                 PanelGroup<kW>(q, g, h));
          const uint16_t* d = ref::PanelScales(w, r, b0 + j);
          for (int h = 0; h < 2; ++h)
            _mm256_store_ps(
                row_scale[j][h],
                _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + 8 * h))));
        }
        for (int l = 0; !kStored && l < 16; ++l) {
          const uint8_t* q = quants + int64_t(r + l) * row_bytes;
          for (int j = 0; j < n; ++j) {
            alignas(32) uint8_t block[32];
            if constexpr (kW == DType::kQ8_0) {
              std::memcpy(block, q + (b0 + j) * 32, 32);
            } else {
              const __m128i bytes =
                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + (b0 + j) * 16));
              _mm256_store_si256(
                  reinterpret_cast<__m256i*>(block),
                  _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15)),
                                   _mm_and_si128(bytes, _mm_set1_epi8(15))));
            }
            for (int g = 0; g < 8; ++g) std::memcpy(&panel[j][g][l / 8][l % 8], block + 4 * g, 4);
            row_scale[j][l / 8][l % 8] = _cvtsh_ss(scales[int64_t(r + l) * nb + b0 + j]);
          }
        }
        for (int t = t0; t < t1; ++t) {
          const int8_t* xt = in.q + int64_t(t) * cols;
          // q8_0: this token's |x| for the chunk, made once for the 16 rows (the ALU is the limit).
          alignas(32) int8_t x_abs[kW == DType::kQ8_0 ? kChunk * 32 : 1];
          if constexpr (kW == DType::kQ8_0)
            for (int j = 0; j < n; ++j)
              _mm256_store_si256(reinterpret_cast<__m256i*>(x_abs + 32 * j),
                                 _mm256_abs_epi8(_mm256_loadu_si256(
                                     reinterpret_cast<const __m256i*>(xt + (b0 + j) * 32))));
          __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
          for (int j = 0; j < n; ++j) {
            const int b = b0 + j;
            __m256i i0, i1;
            PanelBlockDot<kW>(
                [&](int g, int h) {
                  return _mm256_load_si256(reinterpret_cast<const __m256i*>(panel[j][g][h]));
                },
                xt + int64_t(b) * 32, kW == DType::kQ4_0 ? x_start[t - t0][b] : 0, &i0, &i1,
                kW == DType::kQ8_0 ? x_abs + 32 * j : nullptr);
            const __m256 dx = _mm256_set1_ps(in.d[int64_t(t) * nb + b]);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0),
                                   _mm256_mul_ps(_mm256_load_ps(row_scale[j][0]), dx), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1),
                                   _mm256_mul_ps(_mm256_load_ps(row_scale[j][1]), dx), acc1);
          }
          float* out = y + int64_t(t) * y_stride + r;
          _mm256_storeu_ps(out, b0 == 0 ? acc0 : _mm256_add_ps(acc0, _mm256_loadu_ps(out)));
          _mm256_storeu_ps(out + 8, b0 == 0 ? acc1 : _mm256_add_ps(acc1, _mm256_loadu_ps(out + 8)));
        }
      }
    }
  }
}

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

// sum x*y over n floats.
inline float Dot(const float* x, const float* y, int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
  float s = HSum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
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

// ---- the variants (kernels.h), in the order a table tries them ---------------------------------
// Each TU that includes this header (avx2, avxvnni, avx512vnni, amx and the test twins) lists its
// own copies, compiled with its own flags.

// Float weights: decode, then prefill.
constexpr MatmulKernel kFloatMatmuls[] = {
    {.name = "f32_gemv_avx2", .weights = DType::kF32, .max_tokens = 1, .fn = Gemv<DType::kF32>},
    {.name = "f16_gemv_avx2", .weights = DType::kF16, .max_tokens = 1, .fn = Gemv<DType::kF16>},
    {.name = "bf16_gemv_avx2", .weights = DType::kBF16, .max_tokens = 1, .fn = Gemv<DType::kBF16>},
    {.name = "f32_gemm_tiles4x2_avx2", .weights = DType::kF32, .fn = GemmTiles4x2<DType::kF32>},
    {.name = "f16_gemm_tiles4x2_avx2", .weights = DType::kF16, .fn = GemmTiles4x2<DType::kF16>},
    {.name = "bf16_gemm_tiles4x2_avx2", .weights = DType::kBF16, .fn = GemmTiles4x2<DType::kBF16>},
};

// Quantized weights in the panel layout: decode, then prefill.
constexpr MatmulKernel kPanelMatmuls[] = {
    {.name = "q8_0_q8_gemv_panels_avx2",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_panels_avx2",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ4_0>},
    {.name = "q8_0_q8_gemm_panels_avx2",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ8_0, true>},
    {.name = "q4_0_q8_gemm_panels_avx2",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ4_0, true>},
};

// Quantized weights in planar rows, decode.
constexpr MatmulKernel kRowGemvs[] = {
    {.name = "q8_0_q8_gemv_avx2",
     .weights = DType::kQ8_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_avx2",
     .weights = DType::kQ4_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ4_0>},
};

// Quantized weights in planar rows, prefill: 16 rows at a time gathered into panels, then the
// rows left over (and rows too wide for the panels, and decode of such rows) in 4-row tiles.
constexpr MatmulKernel kRowGemms[] = {
    {.name = "q8_0_q8_gemm_gathered_panels_avx2",
     .weights = DType::kQ8_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ8_0, false>},
    {.name = "q4_0_q8_gemm_gathered_panels_avx2",
     .weights = DType::kQ4_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ4_0, false>},
    {.name = "q8_0_q8_gemm_tiles4_avx2", .weights = DType::kQ8_0, .fn = GemmTiles4<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_tiles4_avx2", .weights = DType::kQ4_0, .fn = GemmTiles4<DType::kQ4_0>},
};

// Attention, one head at a time with the head in registers, for the head sizes MobileLLM uses.
constexpr AttendKernel kAttends[] = {
    {.name = "f32_attend_hd32_avx2",
     .kv = DType::kF32,
     .head_dim = 32,
     .fn = Attend<4, DType::kF32>},
    {.name = "f32_attend_hd64_avx2",
     .kv = DType::kF32,
     .head_dim = 64,
     .fn = Attend<8, DType::kF32>},
    {.name = "f32_attend_hd128_avx2",
     .kv = DType::kF32,
     .head_dim = 128,
     .fn = Attend<16, DType::kF32>},
    {.name = "f16_attend_hd32_avx2",
     .kv = DType::kF16,
     .head_dim = 32,
     .fn = Attend<4, DType::kF16>},
    {.name = "f16_attend_hd64_avx2",
     .kv = DType::kF16,
     .head_dim = 64,
     .fn = Attend<8, DType::kF16>},
    {.name = "f16_attend_hd128_avx2",
     .kv = DType::kF16,
     .head_dim = 128,
     .fn = Attend<16, DType::kF16>},
};

constexpr RowToF32Fns kRowToF32 = {.f32 = RowToF32<DType::kF32>,
                                   .f16 = RowToF32<DType::kF16>,
                                   .bf16 = RowToF32<DType::kBF16>,
                                   .q8_0 = RowToF32<DType::kQ8_0>,
                                   .q4_0 = RowToF32<DType::kQ4_0>};

// The "avx2" table's lists, and the table. The other x86 tables are this one with their own name,
// features and lists (src/kernels/*.cpp): they share its elementwise ops.
constexpr auto kTableMatmuls =
    ConcatKernels(kFloatMatmuls, kPanelMatmuls, kRowGemvs, kRowGemms, ref::kMatmuls);
constexpr auto kTableAttends = ConcatKernels(kAttends, ref::kAttends);
constexpr KernelTable kTable = {
    .name = "avx2",
    .features = "avx2 fma f16c",
    .supported = [](const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; },
    .matmuls = kTableMatmuls,
    .attends = kTableAttends,
    .row_to_f32 = kRowToF32,
    .quantize_q8 = QuantizeQ8,
    .rmsnorm = RmsNorm,
    .silu_mul = SiluMul,
    .add = Add,
    .rope = Rope,
    .to_f16 = ToF16,
};

}  // namespace
}  // namespace mobilellm::avx2
