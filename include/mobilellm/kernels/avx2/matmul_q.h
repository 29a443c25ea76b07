// AVX2 matmuls with quantized weights (q8_0, q4_0) in planar rows against int8 activations: the
// decode GEMV and the 4-row tiles, and the integer helpers the panel kernels share.
#pragma once

#include "mobilellm/kernels/avx2/common.h"

namespace mobilellm::avx2 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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
// wider rows take other variants (MatmulKernel::max_blocks).
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

// Decode with quantized weights in planar rows (a file converted to rows, or a matrix whose rows
// are not a multiple of 16): one row at a time, one sequential stream; the panel GEMV reads four
// (see GemvPanels). Rows of up to kMaxBlocks blocks: the scales sit in a stack array.
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

}  // namespace
}  // namespace mobilellm::avx2
