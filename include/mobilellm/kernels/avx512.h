// AVX-512 VNNI kernels for quantized weights: vpdpbusd on zmm, two blocks of 32 per instruction.
// Included only by src/kernels/avx512.cpp (built with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni); float weights and elementwise ops reuse the AVX2 bodies in that table.
#pragma once

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "kernels/avx512.h needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

#include <cstring>

#include "mobilellm/kernels/avx2.h"

// What the AVX-512 VNNI kernels need, for every table built on them (avx512vnni, amx and its
// test twin): the features' names for messages, and the check.
#define MOBILELLM_AVX512VNNI_FEATURES "avx2 fma f16c avx512f avx512bw avx512vl avx512vnni"

namespace mobilellm::avx512 {
// Internal linkage: every kernel TU gets its own copy compiled with its own ISA flags. Shared
// inline or template code would be merged across TUs by the linker, and an AVX-512 build of a
// function could end up serving the portable table (SIGILL on older CPUs).
namespace {

using avx2::kMaxBlocks;

inline bool Supported(const CpuFeatures& f) {
  return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

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

// Group g (4 elements) of a stored panel block, 16 rows, as vpdpbusd's unsigned operand: q8_0 as
// w + 128 (sign bit flipped), q4_0 as the stored nibble q + 8 (format.h).
template <DType kW>
inline __m512i PanelGroup(const uint8_t* q, int g) {
  if constexpr (kW == DType::kQ8_0) {
    return _mm512_xor_si512(_mm512_loadu_si512(q + 64 * g), _mm512_set1_epi8(char(0x80)));
  } else {
    const __m512i bytes = _mm512_loadu_si512(q + 64 * (g / 2));
    return _mm512_and_si512(g % 2 == 0 ? bytes : _mm512_srli_epi16(bytes, 4), _mm512_set1_epi8(15));
  }
}

// Decode from panels (format.h): the weights stream by as stored, one sequential stream, and each
// vpdpbusd multiplies 4 weights of 16 rows by 4 activations broadcast from memory, so a block of
// 16 rows costs 8 vpdpbusd plus (q8_0) 8 XORs or (q4_0) 8 ANDs and one shift, and then one
// convert and one FMA with the 16 rows' scales: the float work is shared by 16 rows instead of
// paid per row. Each block's accumulator starts at -off * sum(x_b), as in GemvQ.
template <DType kW>
void GemvPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int /*y_stride*/) {
  constexpr int kOffset = kW == DType::kQ8_0 ? 128 : 8;
  const int nb = w.cols / format::kBlock, block_bytes = ref::PanelBlockBytes(w);
  alignas(64) int32_t x_start[kMaxBlocks];
  for (int b = 0; b < nb; ++b) x_start[b] = -kOffset * avx2::BlockSum(in.q + b * 32);
  // No software prefetch: the stream is sequential, and Zen 4's prefetchers keep up with it
  // (measured: prefetching 1-4 KB ahead cost 10-20%).
  // acc + block b of 16 rows: its 16 dot products, scaled.
  const auto block_dot = [&](__m512 acc, const uint8_t* block, int b) {
    const uint8_t* q = block + 2 * format::kPanelRows;
    const int8_t* xb = in.q + b * 32;
    __m512i a0 = _mm512_set1_epi32(x_start[b]), a1 = _mm512_setzero_si512();
    for (int g = 0; g < 8; g += 2) {
      int32_t x0, x1;
      std::memcpy(&x0, xb + 4 * g, 4);
      std::memcpy(&x1, xb + 4 * g + 4, 4);
      if constexpr (kW == DType::kQ4_0) {
        // Groups g and g + 1 share 64 bytes (low and high nibbles). The high nibbles go in
        // unshifted, as 16 * q: vpdpbusd does not saturate, and one shift per block undoes it.
        // The empty asm keeps the 64 bytes in a register: GCC otherwise folds the load into both
        // ANDs, and the doubled zmm loads, not vpdpbusd, then bound the loop.
        __m512i bytes = _mm512_loadu_si512(q + 32 * g);
        __asm__("" : "+v"(bytes));
        a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(bytes, _mm512_set1_epi8(0x0F)),
                                 _mm512_set1_epi32(x0));
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(bytes, _mm512_set1_epi8(char(0xF0))),
                                 _mm512_set1_epi32(x1));
      } else {
        a0 = _mm512_dpbusd_epi32(a0, PanelGroup<kW>(q, g), _mm512_set1_epi32(x0));
        a1 = _mm512_dpbusd_epi32(a1, PanelGroup<kW>(q, g + 1), _mm512_set1_epi32(x1));
      }
    }
    if constexpr (kW == DType::kQ4_0) a1 = _mm512_srai_epi32(a1, 4);  // exact: all 16 * q * x
    const __m512 sc =
        _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block))),
                      _mm512_set1_ps(in.d[b]));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), sc, acc);
  };
  const uint8_t* block = ref::PanelBlock(w, r0, 0);
  for (int r = r0; r < r1; r += format::kPanelRows) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    int b = 0;
    for (; b + 2 <= nb; b += 2, block += 2 * block_bytes) {  // two chains, no parity branch
      acc0 = block_dot(acc0, block, b);
      acc1 = block_dot(acc1, block + block_bytes, b + 1);
    }
    if (b < nb) acc0 = block_dot(acc0, block, b), block += block_bytes;
    _mm512_storeu_ps(y + r, _mm512_add_ps(acc0, acc1));
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

// kNT tokens (t .. t + kNT - 1) against blocks [b0, b0 + n) of a repacked 16-row panel (see
// MatmulQ): each group of weights is loaded once for all kNT tokens, whose int32 accumulators stay
// in registers through a block, and the activations are broadcast straight from memory; the float
// accumulators take each block's result with the rows' scales.
template <int kNT>
inline void PanelTile(const uint32_t (*panel)[8][16], const float (*row_scale)[16],
                      const MatmulInput& in, int cols, int t, int b0, int n,
                      const int32_t (*x_start)[kMaxBlocks], int t0, float* y, int y_stride, int r) {
  const int nb = cols / format::kBlock;
  __m512 acc[kNT];
  for (int u = 0; u < kNT; ++u) acc[u] = _mm512_setzero_ps();
  for (int j = 0; j < n; ++j) {
    const int b = b0 + j;
    __m512i a[kNT][2];
    for (int u = 0; u < kNT; ++u) {
      a[u][0] = _mm512_set1_epi32(x_start[t + u - t0][b]);
      a[u][1] = _mm512_setzero_si512();
    }
    for (int g = 0; g < 8; g += 2) {
      const __m512i w0 = _mm512_load_si512(panel[j][g]), w1 = _mm512_load_si512(panel[j][g + 1]);
      for (int u = 0; u < kNT; ++u) {
        const int8_t* xb = in.q + int64_t(t + u) * cols + int64_t(b) * 32 + 4 * g;
        int32_t x0, x1;
        std::memcpy(&x0, xb, 4);
        std::memcpy(&x1, xb + 4, 4);
        a[u][0] = _mm512_dpbusd_epi32(a[u][0], w0, _mm512_set1_epi32(x0));
        a[u][1] = _mm512_dpbusd_epi32(a[u][1], w1, _mm512_set1_epi32(x1));
      }
    }
    const __m512 rs = _mm512_load_ps(row_scale[j]);
    for (int u = 0; u < kNT; ++u) {
      const __m512 dx = _mm512_set1_ps(in.d[int64_t(t + u) * nb + b]);
      acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a[u][0], a[u][1])),
                               _mm512_mul_ps(rs, dx), acc[u]);
    }
  }
  for (int u = 0; u < kNT; ++u) {
    float* out = y + int64_t(t + u) * y_stride + r;
    _mm512_storeu_ps(out, b0 == 0 ? acc[u] : _mm512_add_ps(acc[u], _mm512_loadu_ps(out)));
  }
}

// Prefill, 16 rows at a time: a panel of 16 rows x 32 blocks is repacked once per group of 64
// tokens so that each int32 lane belongs to one row: panel[j][g] holds bytes 4g..4g+3 of block j
// of all 16 rows. One vpdpbusd then multiplies 4 bytes of 16 rows by the same 4 activation bytes
// (broadcast), and a block's 16 row results come out in one register, ready for the 16 row scales
// in one FMA: about 12 instructions per 512 multiply-adds, against 5 per 64 in 4-row tiles.
// Planar files (kStored false; an even number of blocks) are repacked on the fly in L1; files in
// the panel layout (format.h) are already in this order and need only the unsigned offset (q8_0)
// or the nibbles split (q4_0). r0 and r1 are multiples of 16; at most kMaxBlocks blocks.
template <DType kW, bool kStored>
void GemmPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  constexpr int kBlockBytes = kW == DType::kQ8_0 ? 32 : 16, kChunk = 32, kGroup = 64, kTile = 4;
  constexpr int kOffset = kW == DType::kQ8_0 ? 128 : 8;
  const int cols = w.cols, nb = cols / format::kBlock;
  const int64_t row_bytes = int64_t(nb) * kBlockBytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  alignas(64) uint32_t panel[kChunk][8][16];        // 16 KB
  alignas(64) float row_scale[kChunk][16];          // dW of the 16 rows, per block
  alignas(64) int32_t x_start[kGroup][kMaxBlocks];  // -off * sum of block b's activations
  for (int t0 = 0; t0 < in.n_tokens; t0 += kGroup) {
    const int t1 = std::min(in.n_tokens, t0 + kGroup);
    for (int t = t0; t < t1; ++t)
      for (int b = 0; b < nb; ++b)
        x_start[t - t0][b] = -kOffset * avx2::BlockSum(in.q + int64_t(t) * cols + int64_t(b) * 32);
    for (int r = r0; r < r1; r += 16) {
      for (int b0 = 0; b0 < nb; b0 += kChunk) {
        const int n = std::min(kChunk, nb - b0);
        for (int j = 0; kStored && j < n; ++j) {  // stored panels: only the unsigned offset
          const uint8_t* q = ref::PanelQuants(w, r, b0 + j);
          for (int g = 0; g < 8; ++g) _mm512_store_si512(panel[j][g], PanelGroup<kW>(q, g));
          _mm512_store_ps(row_scale[j],
                          _mm512_cvtph_ps(_mm256_loadu_si256(
                              reinterpret_cast<const __m256i*>(ref::PanelScales(w, r, b0 + j)))));
        }
        for (int l = 0; !kStored && l < 16; ++l) {  // planar rows: gathered into the panel
          const uint8_t* q = quants + int64_t(r + l) * row_bytes;
          for (int j = 0; j < n; j += 2) {
            alignas(64) uint8_t two[64];
            _mm512_store_si512(two, UnsignedTwoBlocks<kW>(q, b0 + j));
            for (int h = 0; h < 2; ++h)
              for (int g = 0; g < 8; ++g) std::memcpy(&panel[j + h][g][l], two + 32 * h + 4 * g, 4);
          }
          for (int j = 0; j < n; ++j)
            row_scale[j][l] = F16ToF32(scales[int64_t(r + l) * nb + b0 + j]);
        }
        int t = t0;
        for (; t + kTile <= t1; t += kTile)
          PanelTile<kTile>(panel, row_scale, in, cols, t, b0, n, x_start, t0, y, y_stride, r);
        for (; t < t1; ++t)
          PanelTile<1>(panel, row_scale, in, cols, t, b0, n, x_start, t0, y, y_stride, r);
      }
    }
  }
}

// ---- attention -----------------------------------------------------------------------------

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

// ---- the variants (kernels.h), in the order a table tries them ---------------------------------

// Quantized weights: decode from panels and from rows, prefill from panels (stored, then planar
// rows gathered 16 at a time, then their leftover rows in 4-row tiles).
constexpr MatmulKernel kMatmuls[] = {
    {.name = "q8_0_q8_gemv_panels_avx512vnni",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_panels_avx512vnni",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ4_0>},
    {.name = "q8_0_q8_gemv_avx512vnni",
     .weights = DType::kQ8_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_avx512vnni",
     .weights = DType::kQ4_0,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvQ<DType::kQ4_0>},
    {.name = "q8_0_q8_gemm_panels_avx512vnni",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ8_0, true>},
    {.name = "q4_0_q8_gemm_panels_avx512vnni",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ4_0, true>},
    {.name = "q8_0_q8_gemm_gathered_panels_avx512vnni",
     .weights = DType::kQ8_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ8_0, false>},
    {.name = "q4_0_q8_gemm_gathered_panels_avx512vnni",
     .weights = DType::kQ4_0,
     .min_tokens = 2,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 16,
     .fn = GemmPanels<DType::kQ4_0, false>},
    {.name = "q8_0_q8_gemm_tiles4_avx512vnni",
     .weights = DType::kQ8_0,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 4,
     .fn = GemmTiles4<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_tiles4_avx512vnni",
     .weights = DType::kQ4_0,
     .max_blocks = kMaxBlocks,
     .block_multiple = 2,
     .row_multiple = 4,
     .fn = GemmTiles4<DType::kQ4_0>},
};

// Attention, head dim 64: long contexts in one pass, short ones in two. Measured in decode steps
// (q4_0 125M, one thread): at 128-328 positions the two-pass kernel spent 3-5% less time in
// attention, at ~540-670 the one-pass kernel 4-6% less and at ~1,550 12% less; from cache the
// two-pass kernel is 10-20% faster at any length.
constexpr int kStreamKeys = 512;
constexpr AttendKernel kAttends[] = {
    {.name = "f32_attend_hd64_gqa_streamed_avx512",
     .kv = DType::kF32,
     .head_dim = 64,
     .min_keys = kStreamKeys,
     .fn = AttendHd64<DType::kF32, true>},
    {.name = "f16_attend_hd64_gqa_streamed_avx512",
     .kv = DType::kF16,
     .head_dim = 64,
     .min_keys = kStreamKeys,
     .fn = AttendHd64<DType::kF16, true>},
    {.name = "f32_attend_hd64_gqa_avx512",
     .kv = DType::kF32,
     .head_dim = 64,
     .fn = AttendHd64<DType::kF32, false>},
    {.name = "f16_attend_hd64_gqa_avx512",
     .kv = DType::kF16,
     .head_dim = 64,
     .fn = AttendHd64<DType::kF16, false>},
};

// The lists of a table built on these kernels. The AVX2 row kernels serve what the AVX-512 ones do
// not: odd block counts (no MobileLLM shape has one), rows wider than kMaxBlocks, rows left over
// by the 4-row tiles; the AVX2 attention serves other head sizes.
constexpr auto kTableMatmuls =
    ConcatKernels(avx2::kFloatMatmuls, kMatmuls, avx2::kRowGemms, ref::kMatmuls);
constexpr auto kTableAttends = ConcatKernels(kAttends, avx2::kAttends, ref::kAttends);

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace
}  // namespace mobilellm::avx512
