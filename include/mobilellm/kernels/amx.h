// AMX-INT8 prefill for quantized weights. Included only by src/kernels/amx.cpp (the "amx" table,
// built with AMX flags) and tests/amx_emulated.cpp (its test twin, MOBILELLM_AMX_EMULATE: the same
// kernel on a scalar model of the tile instructions, so it is checked on CPUs without AMX).
//
// One tdpbssd multiplies a tile of 16 tokens x 32 int8 activations (one block) by a tile of 32 x
// 16 weights: 8192 multiply-adds, against 64 for a zmm vpdpbusd. The panel layout (format.h) is
// already what the weight tile wants: a q8_0 panel block, [g][row][4 bytes], is 8 tile rows of 64
// bytes (4 consecutive elements of each of the 16 rows), loaded as stored; q4_0 blocks are
// unpacked to int8 once per panel. Every block has its own scales, so each block's int32 tile is
// stored and added to 16 zmm accumulators with dW[row, b] * dx[token, b]; that float work, not the
// tile multiply, bounds the kernel. Decode and short prompts stay on the AVX-512 VNNI kernels.
#pragma once

#include "mobilellm/kernels/avx512.h"

namespace mobilellm::amx {
namespace {

// LDTILECFG's 64-byte operand (Intel SDM, "LDTILECFG"): palette 1, then bytes per row and rows of
// each tile; unused tiles stay zero.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved0[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

// The kernel uses three tiles: 0 the int32 products (m tokens x 16 rows), 1 the activations (m
// tokens x one block of 32 bytes), 2 the weights (8 x 64 bytes: one block of a panel). A tile's
// number is part of its instruction, so each role has its own function.
#if defined(MOBILELLM_AMX_EMULATE)
// The tile instructions after the SDM's pseudocode, one tile state per thread as in hardware.
struct EmulatedTile {
  int rows = 0, colsb = 0;
  uint8_t data[16][64];
};
thread_local EmulatedTile tiles[3];

inline void LoadConfig(const TileConfig& cfg) {
  for (int t = 0; t < 3; ++t) tiles[t].rows = cfg.rows[t], tiles[t].colsb = cfg.colsb[t];
}
inline void TileLoad(EmulatedTile& t, const void* p, int64_t stride) {
  std::memset(t.data, 0, sizeof t.data);
  for (int r = 0; r < t.rows; ++r)
    std::memcpy(t.data[r], static_cast<const uint8_t*>(p) + r * stride, size_t(t.colsb));
}
inline void LoadActivations(const void* p, int64_t stride) {
  TileLoad(tiles[1], p, stride);
}
inline void LoadWeights(const void* p, int64_t stride) {
  TileLoad(tiles[2], p, stride);
}
inline void ZeroProducts() {
  std::memset(tiles[0].data, 0, sizeof tiles[0].data);
}
inline void StoreProducts(void* p, int64_t stride) {
  const EmulatedTile& t = tiles[0];
  for (int r = 0; r < t.rows; ++r)
    std::memcpy(static_cast<uint8_t*>(p) + r * stride, t.data[r], size_t(t.colsb));
}
// tdpbssd: dst.row[m].dword[n] += sum over k < a.colsb / 4, i < 4 of a.row[m].byte[4k + i] *
// b.row[k].byte[4n + i], all bytes signed.
inline void Multiply() {
  EmulatedTile &c = tiles[0], &a = tiles[1], &b = tiles[2];
  for (int m = 0; m < c.rows; ++m)
    for (int n = 0; n < c.colsb / 4; ++n) {
      int32_t acc;
      std::memcpy(&acc, &c.data[m][4 * n], 4);
      for (int k = 0; k < a.colsb / 4; ++k)
        for (int i = 0; i < 4; ++i)
          acc += int32_t(int8_t(a.data[m][4 * k + i])) * int32_t(int8_t(b.data[k][4 * n + i]));
      std::memcpy(&c.data[m][4 * n], &acc, 4);
    }
}
inline void TileRelease() {
  for (EmulatedTile& t : tiles) t.rows = t.colsb = 0;
}
#else
// Our own asm rather than GCC 12's tile intrinsics, whose operands hide memory from the compiler:
// _tile_loadconfig declares 8 of the 64 config bytes as read (stores to the rest may be dropped as
// dead) and _tile_loadd none (stores to the tile's source may be moved past it).
inline void LoadConfig(const TileConfig& cfg) {
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}
inline void LoadActivations(const void* p, int64_t stride) {
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm1" ::"r"(p), "r"(stride) : "memory");
}
inline void LoadWeights(const void* p, int64_t stride) {
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm2" ::"r"(p), "r"(stride) : "memory");
}
inline void ZeroProducts() {
  __asm__ volatile("tilezero %%tmm0" ::);
}
inline void StoreProducts(void* p, int64_t stride) {
  __asm__ volatile("tilestored %%tmm0, (%0,%1,1)" ::"r"(p), "r"(stride) : "memory");
}
inline void Multiply() {  // tmm0 += tmm1 . tmm2 (AT&T operand order)
  __asm__ volatile("tdpbssd %%tmm2, %%tmm1, %%tmm0" ::);
}
inline void TileRelease() {
  __asm__ volatile("tilerelease" ::);
}
#endif

// Shapes the three tiles for m tokens.
inline void Configure(int m) {
  TileConfig cfg;
  cfg.rows[0] = uint8_t(m), cfg.colsb[0] = 64;
  cfg.rows[1] = uint8_t(m), cfg.colsb[1] = 32;
  cfg.rows[2] = 8, cfg.colsb[2] = 64;
  LoadConfig(cfg);
}

// Block b of a q4_0 panel (format.h: [c][row][4], low nibble element 8c + i, high 8c + 4 + i,
// each q + 8) as the weight tile wants it: 8 rows [g][row][4] of int8 q in [-8, 7].
inline void UnpackQ4Block(const uint8_t* quants, int8_t (*out)[64]) {
  const __m512i low = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
  for (int c = 0; c < 4; ++c) {
    const __m512i bytes = _mm512_loadu_si512(quants + 64 * c);
    _mm512_store_si512(out[2 * c], _mm512_sub_epi8(_mm512_and_si512(bytes, low), eight));
    _mm512_store_si512(out[2 * c + 1],
                       _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(bytes, 4), low), eight));
  }
}

// Tokens [t0, t0 + m) (m <= 16) against the 16-row panel at row r, whose blocks are at
// weights(b) as 8 x 64 tile rows: y[t][r .. r + 16).
template <typename WeightsFn>
inline void PanelTokens(const MatmulInput& in, const WeightView& w, int r, int t0, int m,
                        const WeightsFn& weights, float* y, int y_stride) {
  const int cols = w.cols, nb = cols / format::kBlock;
  alignas(64) int32_t c[16][16] = {};  // rows past m stay zero
  const float* dx[16];                 // rows past m repeat the last token: computed, never stored
  for (int i = 0; i < 16; ++i) dx[i] = in.d + int64_t(t0 + std::min(i, m - 1)) * nb;
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    LoadActivations(in.q + int64_t(t0) * cols + int64_t(b) * format::kBlock, cols);
    LoadWeights(weights(b), 64);
    ZeroProducts();
    Multiply();
    StoreProducts(c, 64);
    const __m512 ws = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ref::PanelScales(w, r, b))));
    for (int i = 0; i < 16; ++i)
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[i])),
                               _mm512_mul_ps(ws, _mm512_set1_ps(dx[i][b])), acc[i]);
  }
  for (int i = 0; i < m; ++i) _mm512_storeu_ps(y + int64_t(t0 + i) * y_stride + r, acc[i]);
}

// Prefill from panels on AMX: for each 16-row panel (q4_0 unpacked once into an L1/L2 buffer),
// every full group of 16 tokens, then the tail group under a tile shape of its own.
template <DType kW>
void GemmPanels(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                int y_stride) {
  const int nb = w.cols / format::kBlock;
  alignas(64) int8_t unpacked[kW == DType::kQ4_0 ? avx2::kMaxBlocks : 1][8][64];  // q4_0: <= 128 KB
  const int n_full = in.n_tokens / 16 * 16;
  for (int pass = 0; pass < 2; ++pass) {
    const int ta = pass == 0 ? 0 : n_full, tb = pass == 0 ? n_full : in.n_tokens;
    if (ta == tb) continue;
    Configure(std::min(16, tb - ta));
    for (int r = r0; r < r1; r += format::kPanelRows) {
      if constexpr (kW == DType::kQ4_0)
        for (int b = 0; b < nb; ++b) UnpackQ4Block(ref::PanelQuants(w, r, b), unpacked[b]);
      const auto weights = [&](int b) -> const void* {
        if constexpr (kW == DType::kQ4_0)
          return unpacked[b];
        else
          return ref::PanelQuants(w, r, b);
      };
      for (int t0 = ta; t0 < tb; t0 += 16)
        PanelTokens(in, w, r, t0, std::min(16, tb - t0), weights, y, y_stride);
    }
  }
  TileRelease();
}

// The variants (kernels.h): prefill from panels, from 16 tokens on (fewer fill too little of a
// tile: the VNNI kernels do better).
constexpr int kMinTokens = 16;
constexpr MatmulKernel kMatmuls[] = {
    {.name = "q8_0_q8_gemm_panels_amx",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kPanels,
     .min_tokens = kMinTokens,
     .max_blocks = avx2::kMaxBlocks,
     .fn = GemmPanels<DType::kQ8_0>},
    {.name = "q4_0_q8_gemm_panels_amx",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kPanels,
     .min_tokens = kMinTokens,
     .max_blocks = avx2::kMaxBlocks,
     .fn = GemmPanels<DType::kQ4_0>},
};

// The lists of a table built on these kernels (amx, and its test twin): the AVX-512 VNNI table's
// behind the AMX prefill.
constexpr auto kTableMatmuls =
    ConcatKernels(avx2::kFloatMatmuls, kMatmuls, avx512::kMatmuls, avx2::kRowGemms, ref::kMatmuls);
constexpr auto kTableAttends = avx512::kTableAttends;

}  // namespace
}  // namespace mobilellm::amx
