// AVX-VNNI kernels for quantized weights: vpdpbusd on ymm (VEX), for the CPUs that have VNNI but
// not AVX-512 (Intel Alder Lake and later client cores, Zen 5 laptops). Included by
// src/kernels/avxvnni.cpp (built with -mavxvnni) and, so the same source can be tested on CPUs and
// emulators without AVX-VNNI, by tests/avxvnni_evex.cpp (built with -mavx512vl -mavx512vnni: the
// same instruction, EVEX-encoded). Float weights, attention and elementwise ops are the AVX2
// bodies; so is every matrix in the planar layout (`--layout rows`), which gets AVX2's
// maddubs path: the VNNI kernels read the panel layout (format.h) that the converter writes.
#pragma once

#if !defined(__AVXVNNI__) && !(defined(__AVX512VNNI__) && defined(__AVX512VL__))
#error "kernels/avxvnni.h needs -mavxvnni (or, for its test twin, -mavx512vl -mavx512vnni)"
#endif

#include <cstring>

#include "mobilellm/kernels/avx2.h"

namespace mobilellm::avxvnni {
// Internal linkage, as in avx2.h: each kernel TU keeps its own copy under its own ISA flags.
namespace {

// acc + the dot products of 4 unsigned bytes of u with 4 signed bytes of s, per int32 lane.
// Exact: vpdpbusd does not saturate.
inline __m256i Dpbusd(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_dpbusd_epi32(acc, u, s);
#endif
}

// 4 activation bytes, broadcast to every lane.
inline __m256i Broadcast4(const int8_t* x) {
  int32_t v;
  std::memcpy(&v, x, 4);
  return _mm256_set1_epi32(v);
}

// Group g (4 elements) of rows 8h..8h+7 of a stored panel block as vpdpbusd's unsigned operand:
// q8_0 as w + 128 (sign bit flipped), q4_0 as the stored nibble q + 8 (format.h). The offset,
// off * sum(x_b), is taken out by starting each block's accumulator at -off * sum(x_b).
template <DType kW>
inline __m256i UnsignedGroup(const uint8_t* q, int g, int h) {
  if constexpr (kW == DType::kQ8_0) {
    return _mm256_xor_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * g + 32 * h)),
        _mm256_set1_epi8(char(0x80)));
  } else {
    const __m256i bytes =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * (g / 2) + 32 * h));
    return _mm256_and_si256(g % 2 == 0 ? bytes : _mm256_srli_epi16(bytes, 4), _mm256_set1_epi8(15));
  }
}

using avx2::kMaxBlocks;

// Decode from panels: the weights stream by as stored, one sequential stream; per block of 16
// rows, 16 vpdpbusd (4 weights of 8 rows by 4 activations broadcast) and then one convert and FMA
// per 8 rows with their scales. q4_0's high nibbles go in masked but unshifted (16 * q), in their
// own accumulators, and one exact shift per block undoes it, as in avx512::GemvPanels.
template <DType kW>
void GemvPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int /*y_stride*/) {
  constexpr int kOffset = kW == DType::kQ8_0 ? 128 : 8;
  const int nb = w.cols / format::kBlock, block_bytes = ref::PanelBlockBytes(w);
  alignas(32) int32_t x_start[kMaxBlocks];
  for (int b = 0; b < nb; ++b) x_start[b] = -kOffset * avx2::BlockSum(in.q + b * 32);
  const uint8_t* block = ref::PanelBlock(w, r0, 0);
  for (int r = r0; r < r1; r += format::kPanelRows) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int b = 0; b < nb; ++b, block += block_bytes) {
      const uint8_t* q = block + 2 * format::kPanelRows;
      const int8_t* xb = in.q + b * 32;
      // Rows 0-7 and 8-15, even and odd groups.
      __m256i e0 = _mm256_set1_epi32(x_start[b]), e1 = e0, o0 = _mm256_setzero_si256(), o1 = o0;
      for (int g = 0; g < 8; g += 2) {
        const __m256i x0 = Broadcast4(xb + 4 * g), x1 = Broadcast4(xb + 4 * g + 4);
        if constexpr (kW == DType::kQ4_0) {
          const __m256i lo = _mm256_set1_epi8(0x0F), hi = _mm256_set1_epi8(char(0xF0));
          const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * g)),
                        b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * g + 32));
          e0 = Dpbusd(e0, _mm256_and_si256(b0, lo), x0);
          e1 = Dpbusd(e1, _mm256_and_si256(b1, lo), x0);
          o0 = Dpbusd(o0, _mm256_and_si256(b0, hi), x1);
          o1 = Dpbusd(o1, _mm256_and_si256(b1, hi), x1);
        } else {
          e0 = Dpbusd(e0, UnsignedGroup<kW>(q, g, 0), x0);
          e1 = Dpbusd(e1, UnsignedGroup<kW>(q, g, 1), x0);
          o0 = Dpbusd(o0, UnsignedGroup<kW>(q, g + 1, 0), x1);
          o1 = Dpbusd(o1, UnsignedGroup<kW>(q, g + 1, 1), x1);
        }
      }
      if constexpr (kW == DType::kQ4_0) {
        o0 = _mm256_srai_epi32(o0, 4);  // exact: every term is 16 * q * x
        o1 = _mm256_srai_epi32(o1, 4);
      }
      const __m256 dx = _mm256_set1_ps(in.d[b]);
      const __m128i* d16 = reinterpret_cast<const __m128i*>(block);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(e0, o0)),
                             _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(d16)), dx), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(e1, o1)),
                             _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(d16 + 1)), dx), acc1);
    }
    _mm256_storeu_ps(y + r, acc0);
    _mm256_storeu_ps(y + r + 8, acc1);
  }
}

// kNT tokens (t.. t + kNT - 1) against blocks [b0, b0 + n) of one unpacked 16-row panel: each
// group of weights is loaded once for all kNT tokens, whose int32 accumulators stay in registers
// through a block; the float accumulators take each block's result with the rows' scales.
template <int kNT>
inline void PanelTile(const uint8_t (*panel)[8][2][32], const float (*row_scale)[2][8],
                      const MatmulInput& in, int t, int b0, int n,
                      const int32_t (*x_start)[kMaxBlocks], int t0, float* y, int y_stride, int r) {
  const int cols = in.cols, nb = cols / format::kBlock;
  __m256 acc[kNT][2];
  for (int u = 0; u < kNT; ++u) acc[u][0] = acc[u][1] = _mm256_setzero_ps();
  for (int j = 0; j < n; ++j) {
    const int b = b0 + j;
    __m256i a[kNT][2];
    for (int u = 0; u < kNT; ++u) a[u][0] = a[u][1] = _mm256_set1_epi32(x_start[t + u - t0][b]);
    for (int g = 0; g < 8; ++g) {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel[j][g][0])),
                    w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel[j][g][1]));
      for (int u = 0; u < kNT; ++u) {
        const __m256i xv = Broadcast4(in.q + int64_t(t + u) * cols + int64_t(b) * 32 + 4 * g);
        a[u][0] = Dpbusd(a[u][0], w0, xv);
        a[u][1] = Dpbusd(a[u][1], w1, xv);
      }
    }
    const __m256 rs0 = _mm256_load_ps(row_scale[j][0]), rs1 = _mm256_load_ps(row_scale[j][1]);
    for (int u = 0; u < kNT; ++u) {
      const __m256 dx = _mm256_set1_ps(in.d[int64_t(t + u) * nb + b]);
      acc[u][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[u][0]), _mm256_mul_ps(rs0, dx), acc[u][0]);
      acc[u][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[u][1]), _mm256_mul_ps(rs1, dx), acc[u][1]);
    }
  }
  for (int u = 0; u < kNT; ++u) {
    float* out = y + int64_t(t + u) * y_stride + r;
    for (int h = 0; h < 2; ++h) {
      const __m256 v = b0 == 0 ? acc[u][h] : _mm256_add_ps(acc[u][h], _mm256_loadu_ps(out + 8 * h));
      _mm256_storeu_ps(out + 8 * h, v);
    }
  }
}

// Prefill from panels: a panel of 16 rows x up to 32 blocks is unpacked once per group of 64
// tokens into L1 as unsigned groups (q8_0 offset, q4_0 nibbles split), then serves the group's
// tokens four at a time (PanelTile). Planar matrices take the AVX2 kernels.
template <DType kW>
void GemmPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  constexpr int kChunk = 32, kGroup = 64, kTile = 4;
  constexpr int kOffset = kW == DType::kQ8_0 ? 128 : 8;
  const int cols = w.cols, nb = cols / format::kBlock;
  alignas(32) uint8_t panel[kChunk][8][2][32];      // 16 KB
  alignas(32) float row_scale[kChunk][2][8];        // dW of the 16 rows, per block
  alignas(32) int32_t x_start[kGroup][kMaxBlocks];  // -off * sum of block b's activations
  for (int t0 = 0; t0 < in.n_tokens; t0 += kGroup) {
    const int t1 = std::min(in.n_tokens, t0 + kGroup);
    for (int t = t0; t < t1; ++t)
      for (int b = 0; b < nb; ++b)
        x_start[t - t0][b] = -kOffset * avx2::BlockSum(in.q + int64_t(t) * cols + int64_t(b) * 32);
    for (int r = r0; r < r1; r += format::kPanelRows) {
      for (int b0 = 0; b0 < nb; b0 += kChunk) {
        const int n = std::min(kChunk, nb - b0);
        for (int j = 0; j < n; ++j) {
          const uint8_t* q = ref::PanelQuants(w, r, b0 + j);
          for (int g = 0; g < 8; ++g)
            for (int h = 0; h < 2; ++h)
              _mm256_store_si256(reinterpret_cast<__m256i*>(panel[j][g][h]),
                                 UnsignedGroup<kW>(q, g, h));
          const uint16_t* d = ref::PanelScales(w, r, b0 + j);
          for (int h = 0; h < 2; ++h)
            _mm256_store_ps(
                row_scale[j][h],
                _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + 8 * h))));
        }
        int t = t0;
        for (; t + kTile <= t1; t += kTile)
          PanelTile<kTile>(panel, row_scale, in, t, b0, n, x_start, t0, y, y_stride, r);
        for (; t < t1; ++t)
          PanelTile<1>(panel, row_scale, in, t, b0, n, x_start, t0, y, y_stride, r);
      }
    }
  }
}

// The variants (kernels.h): quantized weights in the panel layout, decode then prefill.
constexpr MatmulKernel kPanelMatmuls[] = {
    {.name = "q8_0_q8_gemv_panels_avxvnni",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemv_panels_avxvnni",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_tokens = 1,
     .max_blocks = kMaxBlocks,
     .fn = GemvPanels<DType::kQ4_0>},
    {.name = "q8_0_q8_gemm_panels_avxvnni",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_panels_avxvnni",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .max_blocks = kMaxBlocks,
     .fn = GemmPanels<DType::kQ4_0>},
};

// The lists of a table built on these kernels (avxvnni, and its test twin): the AVX2 kernels for
// float weights and planar rows.
constexpr auto kTableMatmuls = ConcatKernels(avx2::kFloatMatmuls, kPanelMatmuls, avx2::kRowGemvs,
                                             avx2::kRowGemms, ref::kMatmuls);
constexpr auto kTableAttends = avx2::kTableAttends;

}  // namespace
}  // namespace mobilellm::avxvnni
