#include "mobilellm/quantize.h"

#include <algorithm>
#include <cmath>

#include "mobilellm/tensor.h"

namespace mobilellm {

void QuantizeMatrix(const float* src, int64_t rows, int64_t cols, DType dtype, uint8_t* dst) {
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

}  // namespace mobilellm
