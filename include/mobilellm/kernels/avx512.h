// AVX-512 VNNI kernels for quantized weights: vpdpbusd on zmm, two blocks of 32 per instruction.
// Included only by src/kernels/avx512.cpp (built with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni); float weights and elementwise ops reuse the AVX2 bodies in that table.
#pragma once

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "kernels/avx512.h needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

#include "mobilellm/kernels/avx2.h"

namespace mobilellm::avx512 {
// Internal linkage: every kernel TU gets its own copy compiled with its own ISA flags. Shared
// inline or template code would be merged across TUs by the linker, and an AVX-512 build of a
// function could end up serving the portable table (SIGILL on older CPUs).
namespace {

// Quants of blocks b and b + 1 of a row as 64 int8 in element order.
template <DType kW>
inline __m512i LoadTwoBlocks(const uint8_t* row, int b) {
  if constexpr (kW == DType::kQ8_0) {
    return _mm512_loadu_si512(row + b * 32);
  } else {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 16));
    const __m256i m = _mm256_set1_epi8(15);
    const __m256i lo = _mm256_and_si256(bytes, m),
                  hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m);
    // [lo0 hi0 | lo1 hi1]: block b is lo0,hi0 (16 + 16 elements), block b + 1 is lo1,hi1.
    const __m512i v =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_permute2x128_si256(lo, hi, 0x20)),
                           _mm256_permute2x128_si256(lo, hi, 0x31), 1);
    return _mm512_sub_epi8(v, _mm512_set1_epi8(8));
  }
}

// Two blocks: 16 int32 lanes, 8 per block. vpdpbusd takes an unsigned operand: |x| times w
// carrying x's sign.
inline __m512i DotTwoBlocks(__m512i x_abs, __mmask64 x_neg, __m512i w) {
  const __m512i z = _mm512_setzero_si512();
  return _mm512_dpbusd_epi32(z, x_abs, _mm512_mask_sub_epi8(w, x_neg, z, w));
}

template <DType kW>
void MatmulQ(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int y_stride) {
  // Decode: the AVX2 single-row GEMV measured faster than zmm variants (90.8 vs 99.9 tok/s on
  // q8_0 125M, 1 thread): at one token the loop is bound by per-block overhead, not multiplies.
  if (in.n_tokens == 1 && avx2::GemvQ<kW>(in, w, r0, r1, y)) return;
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16, kChunk = 64;
  const int cols = w.cols, nb = cols / format::kBlock;
  if (nb < 2) return avx2::MatmulQ<kW>(in, w, r0, r1, y, y_stride);
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  // [s[b] x 8 | s[b + 1] x 8] from two adjacent floats: one load, one permute.
  const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  alignas(64) float s[4][kChunk];
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint8_t* q0 = quants + int64_t(r) * row_bytes;
    const bool prefetch = r + 8 <= r1;
    if (r + 12 <= r1) avx2::PrefetchScales(scales + int64_t(r + 8) * nb, 4 * nb);
    for (int t = 0; t < in.n_tokens; ++t) {
      const int8_t* xq = in.q + int64_t(t) * cols;
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
      float tail[4] = {0, 0, 0, 0};
      for (int b0 = 0; b0 < nb; b0 += kChunk) {
        const int n = std::min(kChunk, nb - b0), n2 = n & ~1;
        avx2::TileScales(scales, nb, r, in.d + int64_t(t) * nb, b0, n, s);
        for (int j = 0; j < n2; j += 2) {
          const int b = b0 + j;
          if (t == 0 && prefetch && (b * kBlockBytes) % 64 == 0)
            avx2::PrefetchTile(q0 + 4 * row_bytes, b * kBlockBytes, row_bytes);
          const __m512i x = _mm512_loadu_si512(xq + b * 32);
          const __m512i x_abs = _mm512_abs_epi8(x);
          const __mmask64 x_neg = _mm512_movepi8_mask(x);
          for (int i = 0; i < 4; ++i) {
            const __m512i p = DotTwoBlocks(x_abs, x_neg, LoadTwoBlocks<kW>(q0 + i * row_bytes, b));
            const __m512 sc =
                _mm512_permutexvar_ps(pair, _mm512_castps256_ps512(_mm256_loadu_ps(&s[i][j])));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc[i]);
          }
        }
        if (n2 < n) {  // odd block count: the last block of the chunk with ymm
          const int b = b0 + n2;
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
          for (int i = 0; i < 4; ++i) {
            const __m256i p = avx2::DotBlock(_mm256_sign_epi8(x, x), x,
                                             avx2::LoadBlock<kW>(q0 + i * row_bytes, b));
            tail[i] += avx2::HSum(_mm256_cvtepi32_ps(p)) * s[i][n2];
          }
        }
      }
      for (int i = 0; i < 4; ++i)
        y[int64_t(t) * y_stride + r + i] = _mm512_reduce_add_ps(acc[i]) + tail[i];
    }
  }
  if (r < r1) avx2::MatmulQ<kW>(in, w, r, r1, y, y_stride);
}

}  // namespace
}  // namespace mobilellm::avx512
