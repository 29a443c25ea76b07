#include "mobilellm/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "mobilellm/tensor.h"

namespace mobilellm {

using format::Layout;

namespace {

// Planar [rows, cols] quants and scales -> panels of 16 rows (format.h).
void PackPanels(const uint8_t* planar, int64_t rows, int64_t cols, DType dtype, uint8_t* dst) {
  constexpr int kP = format::kPanelRows;
  const bool q8 = dtype == DType::kQ8_0;
  const int64_t nb = cols / format::kBlock, row_bytes = q8 ? cols : cols / 2;
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(planar + rows * row_bytes);
  for (int64_t p = 0; p < rows / kP; ++p) {
    for (int64_t b = 0; b < nb; ++b) {
      uint16_t block_scales[kP];
      for (int l = 0; l < kP; ++l) block_scales[l] = scales[(p * kP + l) * nb + b];
      std::memcpy(dst, block_scales, sizeof(block_scales));
      uint8_t* q = dst + sizeof(block_scales);
      for (int l = 0; l < kP; ++l) {
        const uint8_t* row = planar + (p * kP + l) * row_bytes;
        for (int j = 0; j < format::kBlock; ++j) {
          const int g = j / 4, i = j % 4;
          if (q8) {
            q[(g * kP + l) * 4 + i] = row[b * 32 + j];
          } else {  // planar: byte j % 16 of the block, low nibble for j < 16
            const uint8_t byte = row[b * 16 + (j & 15)];
            const uint8_t nibble = j < 16 ? byte & 15 : byte >> 4;
            uint8_t& out = q[((g / 2) * kP + l) * 4 + i];
            out = g % 2 == 0 ? uint8_t((out & 0xF0) | nibble) : uint8_t((out & 0x0F) | nibble << 4);
          }
        }
      }
      dst = q + (q8 ? 512 : 256);
    }
  }
}

void QuantizePlanar(const float* src, int64_t rows, int64_t cols, DType dtype, uint8_t* dst) {
  const int64_t nb = cols / format::kBlock;
  const bool q8 = dtype == DType::kQ8_0;
  uint8_t* quants = dst;
  uint16_t* scales = reinterpret_cast<uint16_t*>(dst + (q8 ? rows * cols : rows * cols / 2));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = src + r * cols + b * format::kBlock;
      float amax = 0.0f, extreme = 0.0f;
      for (int j = 0; j < format::kBlock; ++j) {
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), extreme = x[j];
      }
      const uint16_t d16 = F32ToF16(q8 ? amax / 127.0f : extreme / -8.0f);
      const float d = F16ToF32(d16), inv = d != 0.0f ? 1.0f / d : 0.0f;
      scales[r * nb + b] = d16;
      if (q8) {
        int8_t* q = reinterpret_cast<int8_t*>(quants + r * cols + b * format::kBlock);
        for (int j = 0; j < format::kBlock; ++j)
          q[j] = int8_t(std::clamp(std::nearbyint(x[j] * inv), -127.0f, 127.0f));
      } else {
        uint8_t* q = quants + r * cols / 2 + b * 16;
        for (int j = 0; j < 16; ++j) {
          const int lo = int(std::clamp(std::nearbyint(x[j] * inv), -8.0f, 7.0f)) + 8;
          const int hi = int(std::clamp(std::nearbyint(x[j + 16] * inv), -8.0f, 7.0f)) + 8;
          q[j] = uint8_t(lo | hi << 4);
        }
      }
    }
  }
}

}  // namespace

Layout PreferredLayout(int64_t rows) {
  return rows % format::kPanelRows == 0 ? Layout::kPanels : Layout::kRows;
}

void QuantizeMatrix(const float* src, int64_t rows, int64_t cols, DType dtype, uint8_t* dst,
                    Layout layout) {
  if (layout == Layout::kRows) return QuantizePlanar(src, rows, cols, dtype, dst);
  const uint64_t shape[2] = {uint64_t(rows), uint64_t(cols)};
  std::vector<uint8_t> planar(format::TensorBytes(uint32_t(dtype), 2, shape));
  QuantizePlanar(src, rows, cols, dtype, planar.data());
  PackPanels(planar.data(), rows, cols, dtype, dst);
}

}  // namespace mobilellm
