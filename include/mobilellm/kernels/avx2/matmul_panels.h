// AVX2 matmuls with quantized weights in 16-row panels (format.h), stored so or gathered from
// planar rows: the decode GEMV and the prefill GEMM.
#pragma once

#include "mobilellm/kernels/avx2/matmul_q.h"
#include "mobilellm/kernels/panel_gather.h"

namespace mobilellm::avx2 {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

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
    // Four groups at a time, not all eight: fully unrolled, GCC kept so many broadcasts live that
    // the prefill GEMM spilled its float accumulators to the stack (14 ymm stack accesses in the
    // function, none now; q8_0 prefill 0.84x of this, engine bench, 1 thread).
#pragma GCC unroll 4
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

// Panels r, r + stride, ... (kStreams of them) against one token: each panel's blocks are one
// sequential stream, and the float work (convert, scale, FMA) is shared by 8 rows.
template <DType kW, int kStreams>
inline void PanelStreams(const MatmulInput& in, const WeightView& w, const int32_t* x_start, int r,
                         int stride, float* y) {
  const int nb = w.cols / format::kBlock, block_bytes = ref::PanelBlockBytes(w);
  const uint8_t* block[kStreams];
  __m256 acc[kStreams][2];
  for (int s = 0; s < kStreams; ++s) {
    block[s] = ref::PanelBlock(w, r + s * stride, 0);
    acc[s][0] = acc[s][1] = _mm256_setzero_ps();
  }
  for (int b = 0; b < nb; ++b) {
    const __m256 dx = _mm256_set1_ps(in.d[b]);
    for (int s = 0; s < kStreams; ++s) {
      const uint8_t* q = block[s] + 2 * format::kPanelRows;
      __m256i i0, i1;
      PanelBlockDot<kW>([q](int g, int h) { return PanelGroup<kW>(q, g, h); }, in.q + b * 32,
                        kW == DType::kQ4_0 ? x_start[b] : 0, &i0, &i1);
      const __m128i* d16 = reinterpret_cast<const __m128i*>(block[s]);
      acc[s][0] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0),
                          _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(d16)), dx), acc[s][0]);
      acc[s][1] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1),
                          _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(d16 + 1)), dx), acc[s][1]);
      block[s] += block_bytes;
    }
  }
  for (int s = 0; s < kStreams; ++s) {
    _mm256_storeu_ps(y + r + s * stride, acc[s][0]);
    _mm256_storeu_ps(y + r + s * stride + 8, acc[s][1]);
  }
}

// Decode from panels (format.h): the range's panels in kStreams parts, one panel of each at a
// time, so the weights are that many sequential streams (see the float Gemv: one stream leaves a
// core short of its share of DRAM bandwidth).
template <DType kW>
void GemvPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int /*y_stride*/) {
  constexpr int kStreams = 4;
  const int nb = w.cols / format::kBlock;
  alignas(32) int32_t x_start[kMaxBlocks];
  if constexpr (kW == DType::kQ4_0)
    for (int b = 0; b < nb; ++b) x_start[b] = -8 * BlockSum(in.q + b * 32);
  const int part = (r1 - r0) / format::kPanelRows / kStreams * format::kPanelRows;
  for (int r = r0; r < r0 + part; r += format::kPanelRows)
    PanelStreams<kW, kStreams>(in, w, x_start, r, part, y);
  for (int r = r0 + kStreams * part; r < r1; r += format::kPanelRows)
    PanelStreams<kW, 1>(in, w, x_start, r, 0, y);
}

// Prefill, 16 rows at a time (r0 and r1 multiples of 16): a panel of 16 rows x 32 blocks is put
// in panel order (format.h) in L1 once per group of 64 tokens -- gathered from planar rows
// (kStored false), or from a file in the panel layout with only the q4_0 nibbles split -- so that
// each int32 lane belongs to one row (panel[j][g][h] = bytes 4g..4g+3 of block j of rows
// 8h..8h+7); see PanelBlockDot.
// The 32 quants of block b of a planar row as PanelBlockDot takes them (q4_0: the nibble q + 8),
// for panels::Gather.
template <DType kW>
inline void UnpackBlock(const uint8_t* row, int b, uint8_t* out) {
  if constexpr (kW == DType::kQ8_0) {
    std::memcpy(out, row + b * 32, 32);
  } else {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out),
                       _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15)),
                                        _mm_and_si128(bytes, _mm_set1_epi8(15))));
  }
}

template <DType kW, bool kStored>
void GemmPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  constexpr int kChunk = 32, kGroup = 64;
  const int cols = w.cols, nb = cols / format::kBlock;
  alignas(32) uint32_t panel[kChunk][8][16];  // 16 KB: [block][group][row]
  alignas(32) float row_scale[kChunk][16];
  alignas(32) int32_t x_start[kW == DType::kQ4_0 ? kGroup : 1][kMaxBlocks];
  alignas(32) int8_t x_abs[kW == DType::kQ8_0 ? kGroup : 1][kChunk * 32];  // q8_0: 64 KB
  for (int t0 = 0; t0 < in.n_tokens; t0 += kGroup) {
    const int t1 = std::min(in.n_tokens, t0 + kGroup);
    if constexpr (kW == DType::kQ4_0) {
      for (int t = t0; t < t1; ++t)
        for (int b = 0; b < nb; ++b)
          x_start[t - t0][b] = -8 * BlockSum(in.q + int64_t(t) * cols + int64_t(b) * 32);
    }
    for (int b0 = 0; b0 < nb; b0 += kChunk) {
      const int n = std::min(kChunk, nb - b0);
      // q8_0: the tokens' |x| for the chunk, made once for all rows (the ALU is the limit).
      if constexpr (kW == DType::kQ8_0)
        for (int t = t0; t < t1; ++t)
          for (int j = 0; j < n; ++j)
            _mm256_store_si256(reinterpret_cast<__m256i*>(x_abs[t - t0] + 32 * j),
                               _mm256_abs_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                   in.q + int64_t(t) * cols + (b0 + j) * 32))));
      for (int r = r0; r < r1; r += 16) {
        for (int j = 0; kStored && j < n; ++j) {
          const uint8_t* q = ref::PanelQuants(w, r, b0 + j);
          for (int g = 0; g < 8; ++g)
            for (int h = 0; h < 2; ++h)
              _mm256_store_si256(reinterpret_cast<__m256i*>(panel[j][g] + 8 * h),
                                 PanelGroup<kW>(q, g, h));
          const uint16_t* d = ref::PanelScales(w, r, b0 + j);
          for (int h = 0; h < 2; ++h)
            _mm256_store_ps(
                row_scale[j] + 8 * h,
                _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + 8 * h))));
        }
        if constexpr (!kStored) panels::Gather<1>(w, r, b0, n, UnpackBlock<kW>, panel, row_scale);
        for (int t = t0; t < t1; ++t) {
          const int8_t* xt = in.q + int64_t(t) * cols;
          __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
          for (int j = 0; j < n; ++j) {
            const int b = b0 + j;
            __m256i i0, i1;
            PanelBlockDot<kW>(
                [&](int g, int h) {
                  return _mm256_load_si256(reinterpret_cast<const __m256i*>(panel[j][g] + 8 * h));
                },
                xt + int64_t(b) * 32, kW == DType::kQ4_0 ? x_start[t - t0][b] : 0, &i0, &i1,
                kW == DType::kQ8_0 ? x_abs[t - t0] + 32 * j : nullptr);
            const __m256 dx = _mm256_set1_ps(in.d[int64_t(t) * nb + b]);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0),
                                   _mm256_mul_ps(_mm256_load_ps(row_scale[j]), dx), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1),
                                   _mm256_mul_ps(_mm256_load_ps(row_scale[j] + 8), dx), acc1);
          }
          float* out = y + int64_t(t) * y_stride + r;
          _mm256_storeu_ps(out, b0 == 0 ? acc0 : _mm256_add_ps(acc0, _mm256_loadu_ps(out)));
          _mm256_storeu_ps(out + 8, b0 == 0 ? acc1 : _mm256_add_ps(acc1, _mm256_loadu_ps(out + 8)));
        }
      }
    }
  }
}

}  // namespace
}  // namespace mobilellm::avx2
