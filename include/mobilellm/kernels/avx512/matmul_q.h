// AVX-512 VNNI matmuls with quantized weights in planar rows: the decode GEMV and the 4-row
// prefill tiles (vpdpbusd on zmm, two blocks of 32 per instruction).
#pragma once

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "kernels/avx512 needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

#include <cstring>

#include "mobilellm/kernels/avx2.h"

namespace mobilellm::avx512 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

using avx2::kMaxBlocks;

// Quants of blocks b and b + 1 of a row as 64 unsigned bytes in element order, offset to be
// vpdpbusd's unsigned operand: q8_0 as w + 128 (sign bit flipped), q4_0 as q + 8 (the nibble).
template <DType kW>
inline __m512i UnsignedTwoBlocks(const uint8_t* row, int b) {
  if constexpr (kW == DType::kQ8_0) {
    return _mm512_xor_si512(_mm512_loadu_si512(row + b * 32), _mm512_set1_epi8(char(0x80)));
  } else {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 16));
    const __m256i m = _mm256_set1_epi8(15);
    const __m256i lo = _mm256_and_si256(bytes, m),
                  hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m);
    // [lo0 hi0 | lo1 hi1]: block b is lo0,hi0 (16 + 16 elements), block b + 1 is lo1,hi1.
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_permute2x128_si256(lo, hi, 0x20)),
                              _mm256_permute2x128_si256(lo, hi, 0x31), 1);
  }
}

// Decode: one weight row at a time (a single sequential stream, as in avx2::GemvQ), with the
// weights as vpdpbusd's unsigned operand and the activations as its signed one, so the loop has
// no sign fix-ups: q8_0 quants become w + 128 by flipping their sign bit, q4_0 nibbles go in as
// stored (q + 8). The offset, off * sum(x) per block, is a per-token constant: it starts each
// block's integer accumulator, so the row needs no correction pass. Per two blocks: one load, one
// (q8_0) or three (q4_0) integer ops, one vpdpbusd, one convert, one scale permute, one FMA.
template <DType kW>
void GemvQ(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int /*y_stride*/) {
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16;
  constexpr int kOffset = kW == DType::kQ8_0 ? 128 : 8;
  constexpr int kAhead = 8;  // rows of software prefetch (measured: 4 and 16 were no better)
  const int nb = w.cols / format::kBlock, n2 = nb & ~1;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);

  // Per token: the activations (q4_0: two blocks' worth reordered like the unpacked nibbles,
  // [b 0-15 | b+1 0-15 | b 16-31 | b+1 16-31]) and each pair's starting accumulator: -off * sum(x)
  // in the first int32 lane of each block's lanes (q8_0: 8 lanes a block; q4_0: 4 + 4).
  alignas(64) int8_t x_perm[kW == DType::kQ4_0 ? kMaxBlocks * 32 : 1];
  alignas(64) int32_t start[kMaxBlocks / 2 + 1][16];
  const int8_t* x = in.q;
  if constexpr (kW == DType::kQ4_0) {
    for (int b = 0; b < n2; b += 2) {
      const __m512i v = _mm512_loadu_si512(in.q + b * 32);
      _mm512_storeu_si512(x_perm + b * 32, _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)));
    }
    if (n2 < nb) std::memcpy(x_perm + n2 * 32, in.q + n2 * 32, 32);
    x = x_perm;
  }
  for (int b = 0; b < nb; b += 2) {
    int32_t* st = start[b / 2];
    std::memset(st, 0, sizeof(start[0]));
    st[0] = -kOffset * avx2::BlockSum(in.q + b * 32);
    if (b + 1 < nb) st[kW == DType::kQ8_0 ? 8 : 4] = -kOffset * avx2::BlockSum(in.q + (b + 1) * 32);
  }

  // Lane -> block of the pair, for the combined scales.
  const __m512i pair = kW == DType::kQ8_0
                           ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                           : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  // acc + (blocks b and b + 1 of row q) . x, with sc holding the pair's combined scales.
  const auto pair_dot = [&](__m512 acc, const uint8_t* q, int b, __m512 sc) {
    __m512i wv;
    if constexpr (kW == DType::kQ8_0) {
      wv = _mm512_xor_si512(_mm512_loadu_si512(q + b * 32), _mm512_set1_epi8(char(0x80)));
    } else {
      const __m512i bytes =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * 16)));
      wv = _mm512_and_si512(_mm512_mask_srli_epi16(bytes, 0xFFFF0000u, bytes, 4),
                            _mm512_set1_epi8(15));
    }
    const __m512i p =
        _mm512_dpbusd_epi32(_mm512_load_si512(start[b / 2]), wv, _mm512_loadu_si512(x + b * 32));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
  };
  // The combined scales dW * dx of 16 blocks live in one register, computed from the f16 scales
  // as they stream in; pair k's lanes are picked from it by a fixed permute. (Writing them to a
  // stack array and reloading two at a time stalled on store-to-load forwarding.)
  __m512i pick[8];
  for (int k = 0; k < 8; ++k) pick[k] = _mm512_add_epi32(pair, _mm512_set1_epi32(2 * k));
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  for (int r = r0; r < r1; ++r) {
    const uint8_t* q = quants + int64_t(r) * row_bytes;
    const uint16_t* dw = scales + int64_t(r) * nb;
    if (r + kAhead < r1) {  // the row kAhead rows on, so misses overlap the arithmetic
      const char* ahead = reinterpret_cast<const char*>(q + kAhead * row_bytes);
      for (int64_t o = 0; o < row_bytes; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
    }
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    for (int b16 = 0; b16 < n2; b16 += 16) {
      const int m = std::min(16, n2 - b16);  // even
      const __mmask16 mask = __mmask16((1u << m) - 1);
      const __m512 s16 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, dw + b16)),
                                       _mm512_maskz_loadu_ps(mask, in.d + b16));
      int k = 0;
      for (; 2 * k + 4 <= m; k += 2) {
        acc0 = pair_dot(acc0, q, b16 + 2 * k, _mm512_permutexvar_ps(pick[k], s16));
        acc1 = pair_dot(acc1, q, b16 + 2 * k + 2, _mm512_permutexvar_ps(pick[k + 1], s16));
      }
      if (2 * k < m) acc0 = pair_dot(acc0, q, b16 + 2 * k, _mm512_permutexvar_ps(pick[k], s16));
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (n2 < nb) {  // an odd last block, with ymm
      __m256i wv;
      if constexpr (kW == DType::kQ8_0) {
        wv = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + n2 * 32)),
                              _mm256_set1_epi8(char(0x80)));
      } else {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + n2 * 16));
        wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15)),
                              _mm_and_si128(bytes, _mm_set1_epi8(15)));
      }
      const __m256i p = _mm256_dpbusd_epi32(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(start[n2 / 2])), wv,
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + n2 * 32)));
      sum += avx2::HSum(_mm256_cvtepi32_ps(p)) * (_cvtsh_ss(dw[n2]) * in.d[n2]);
    }
    y[r] = sum;
  }
}

// Prefill rows left over by the 16-row panels below: tiles of 4 rows (r1 - r0 a multiple of 4; an
// even number of blocks, at most kMaxBlocks). A chunk of the tile's blocks
// is unpacked once into an L1 buffer as unsigned bytes (see UnsignedTwoBlocks) and then serves
// every token of a group of 16, so q4_0 nibbles are unpacked once per 16 tokens rather than once
// per token, and the inner loop is load, vpdpbusd, scale permute, convert, FMA. The offset comes
// back once per (row, token, chunk) as off * sum_b s[b] * sum(x_b).
template <DType kW>
void GemmTiles4(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16, kChunk = 64, kGroup = 16;
  constexpr float kOffset = kW == DType::kQ8_0 ? 128.0f : 8.0f;
  const int cols = w.cols, nb = cols / format::kBlock;
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  // [s[b] x 8 | s[b + 1] x 8] from two adjacent floats: one load, one permute.
  const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i zero = _mm512_setzero_si512();
  alignas(64) uint8_t wbuf[4][kChunk * 32];
  alignas(64) float s[4][kChunk];
  alignas(64) float x_sum[kGroup][kMaxBlocks];
  for (int t0 = 0; t0 < in.n_tokens; t0 += kGroup) {
    const int t1 = std::min(in.n_tokens, t0 + kGroup);
    for (int t = t0; t < t1; ++t) avx2::BlockSums(in.q + int64_t(t) * cols, nb, x_sum[t - t0]);
    for (int r = r0; r < r1; r += 4) {
      const uint8_t* q0 = quants + int64_t(r) * row_bytes;
      for (int b0 = 0; b0 < nb; b0 += kChunk) {
        const int n = std::min(kChunk, nb - b0);  // even: nb is
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < n; j += 2)
            _mm512_store_si512(wbuf[i] + j * 32, UnsignedTwoBlocks<kW>(q0 + i * row_bytes, b0 + j));
        for (int t = t0; t < t1; ++t) {
          const int8_t* xq = in.q + int64_t(t) * cols + int64_t(b0) * 32;
          avx2::TileScales(scales, nb, r, in.d + int64_t(t) * nb, b0, n, s);
          __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                           _mm512_setzero_ps()};
          for (int j = 0; j < n; j += 2) {
            const __m512i x = _mm512_loadu_si512(xq + j * 32);
            for (int i = 0; i < 4; ++i) {
              const __m512i p = _mm512_dpbusd_epi32(zero, _mm512_load_si512(wbuf[i] + j * 32), x);
              const __m512 sc = _mm512_permutexvar_ps(
                  pair, _mm512_castps128_ps512(
                            _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(&s[i][j])))));
              acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc[i]);
            }
          }
          for (int i = 0; i < 4; ++i) {
            const float v =
                _mm512_reduce_add_ps(acc[i]) - kOffset * avx2::Dot(s[i], x_sum[t - t0] + b0, n);
            float& out = y[int64_t(t) * y_stride + r + i];
            out = b0 == 0 ? v : out + v;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace mobilellm::avx512
