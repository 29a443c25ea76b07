// The gather the x86 panel GEMMs share (avx2/matmul_panels.h, avx512/matmul_panels.h): 16 planar
// rows of a quantized matrix put in panel order (format.h) in an L1 buffer, so that a GEMM written
// for stored panels serves planar files too.
//
// Not a kernel of its own and not ISA code: each ISA's translation unit compiles its own copy with
// its own flags (internal linkage, as in kernels/ref.h), and passes its own unpack step.
#pragma once

#include <cstdint>
#include <cstring>

#include "mobilellm/kernels/ref.h"

namespace mobilellm::panels {
namespace {

// Blocks [b0, b0 + n) of rows r .. r + 15 of the planar quantized matrix w:
// panel[j][g][l] = bytes 4g .. 4g + 3 of block b0 + j of row r + l as `unpack` makes them, and
// row_scale[j][l] = that block's scale as f32. unpack(row, b, out) writes kBlocks blocks from
// block b of the row, 32 bytes each, to out (64-byte aligned); n is a multiple of kBlocks.
template <int kBlocks, typename UnpackFn>
inline void Gather(const WeightView& w, int r, int b0, int n, const UnpackFn& unpack,
                   uint32_t (*panel)[8][16], float (*row_scale)[16]) {
  const int nb = w.cols / format::kBlock;
  const int64_t row_bytes = int64_t(nb) * (w.dtype == DType::kQ8_0 ? 32 : 16);
  const uint8_t* quants = static_cast<const uint8_t*>(w.data);
  const uint16_t* scales = ref::Scales(w);
  for (int l = 0; l < 16; ++l) {
    const uint8_t* q = quants + int64_t(r + l) * row_bytes;
    for (int j = 0; j < n; j += kBlocks) {
      alignas(64) uint8_t blocks[kBlocks * 32];
      unpack(q, b0 + j, blocks);
      for (int h = 0; h < kBlocks; ++h)
        for (int g = 0; g < 8; ++g) std::memcpy(&panel[j + h][g][l], blocks + 32 * h + 4 * g, 4);
    }
    for (int j = 0; j < n; ++j) row_scale[j][l] = F16ToF32(scales[int64_t(r + l) * nb + b0 + j]);
  }
}

}  // namespace
}  // namespace mobilellm::panels
