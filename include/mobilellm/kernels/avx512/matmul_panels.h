// AVX-512 VNNI matmuls with quantized weights in 16-row panels (format.h), stored so or gathered
// from planar rows: the decode GEMV and the prefill GEMM.
#pragma once

#include "mobilellm/kernels/avx512/matmul_q.h"
#include "mobilellm/kernels/panel_gather.h"

namespace mobilellm::avx512 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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
  constexpr int kChunk = 32, kGroup = 64, kTile = 4;
  constexpr int kOffset = kW == DType::kQ8_0 ? 128 : 8;
  const int cols = w.cols, nb = cols / format::kBlock;
  // Two blocks of a planar row as vpdpbusd's unsigned operand, for panels::Gather.
  const auto unpack = [](const uint8_t* row, int b, uint8_t* out) {
    _mm512_store_si512(out, UnsignedTwoBlocks<kW>(row, b));
  };
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
        if constexpr (!kStored) panels::Gather<2>(w, r, b0, n, unpack, panel, row_scale);
        int t = t0;
        for (; t + kTile <= t1; t += kTile)
          PanelTile<kTile>(panel, row_scale, in, cols, t, b0, n, x_start, t0, y, y_stride, r);
        for (; t < t1; ++t)
          PanelTile<1>(panel, row_scale, in, cols, t, b0, n, x_start, t0, y, y_stride, r);
      }
    }
  }
}

}  // namespace
}  // namespace mobilellm::avx512
