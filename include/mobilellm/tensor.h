// Tensor: a non-owning view of typed memory, plus the scalar fp16/bf16 conversions.
//
// A Tensor never owns or frees its data: the model's weights point into the read-only file mapping
// (activations are plain float arrays of the decoder). Shape is outermost first.
#pragma once

#include <cstdint>
#include <cstring>

#include "mobilellm/format.h"

namespace mobilellm {

using format::DType;

struct Tensor {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  format::Layout layout = format::Layout::kRows;  // quantized matrices may be in panels
  int rank = 0;
  int64_t shape[format::kMaxRank] = {0, 0, 0, 0};

  int64_t rows() const { return rank >= 2 ? shape[0] : 1; }
  int64_t cols() const { return shape[rank - 1]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  // The whole tensor's bytes, block-quantized types included (format::TensorBytes).
  uint64_t nbytes() const {
    uint64_t s[format::kMaxRank] = {0, 0, 0, 0};
    for (int i = 0; i < rank; ++i) s[i] = uint64_t(shape[i]);
    return format::TensorBytes(uint32_t(dtype), uint32_t(rank), s);
  }
  const float* f32() const { return static_cast<const float*>(data); }
};

// The conversions below have internal linkage (static) on purpose: kernel TUs built with AVX2 or
// AVX-512 flags include them, and a shared inline copy could be merged into portable code.
static inline uint32_t F32Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float BitsF32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16 -> binary32, exact (subnormals, inf, NaN included).
static inline float F16ToF32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0x1F) return BitsF32(sign | 0x7F800000u | (mant << 13));
  if (exp != 0) return BitsF32(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return BitsF32(sign);
  int e = -1;  // subnormal: normalise
  do {
    mant <<= 1;
    ++e;
  } while ((mant & 0x400) == 0);
  return BitsF32(sign | uint32_t(112 - e) << 23 | ((mant & 0x3FF) << 13));
}

// binary32 -> binary16, round to nearest even (what PyTorch's .half() does).
static inline uint16_t F32ToF16(float f) {
  const uint32_t x = F32Bits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7FFFFFFF;
  if (abs >= 0x7F800000) return uint16_t(sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0));
  if (abs >= 0x477FF000) return uint16_t(sign | 0x7C00);  // rounds to >= 65520: overflow
  if (abs < 0x38800000) {                                 // result is subnormal or zero
    const int shift = 126 - int(abs >> 23);               // 14..
    if (shift > 24) return uint16_t(sign);
    const uint32_t mant = (abs & 0x7FFFFF) | 0x800000;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

static inline float BF16ToF32(uint16_t b) {
  return BitsF32(uint32_t(b) << 16);
}

// binary32 -> bfloat16, round to nearest even; NaN stays NaN.
static inline uint16_t F32ToBF16(float f) {
  const uint32_t x = F32Bits(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

}  // namespace mobilellm
