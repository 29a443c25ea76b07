// Weight quantization for the converter: f32 rows -> q8_0 / q4_0 in a layout of format.h.
//
// q8_0: per block of 32, d = max|w| / 127 rounded to f16, q = round(w / d) in [-127, 127].
// q4_0: per block of 32, the value m of largest magnitude sets d = m / -8 (f16), q = clamp(round(w
// / d)) + 8
//       in [0, 15], so m itself is represented exactly as -8 * d (ggml's scheme).
#pragma once

#include <cstdint>

#include "mobilellm/format.h"

namespace mobilellm {

// src: [rows, cols] f32 (cols % 32 == 0). dst: TensorBytes(dtype, {rows, cols}) bytes, in the
// planar layout (kRows) or in panels of 16 rows (kPanels: rows % 16 == 0). Both hold the same
// quants and scales.
void QuantizeMatrix(const float* src, int64_t rows, int64_t cols, format::DType dtype, uint8_t* dst,
                    format::Layout layout = format::Layout::kRows);

// The layout the converter stores a quantized [rows, cols] matrix in: panels when rows allow.
format::Layout PreferredLayout(int64_t rows);

}  // namespace mobilellm
