// NEON helpers every NEON kernel family uses: loads of 4 weights as f32, the polynomial exp, the
// f32 dot product.
#pragma once

#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon is for AArch64 with NEON"
#endif

#include <arm_neon.h>

#include <cstdint>

#include "mobilellm/kernels/ref.h"

namespace mobilellm::neon {
namespace {  // internal linkage: each kernel TU its own copy, built with its own flags

// 4 weights at p + i as f32. f16 -> f32 (FCVTL) and bf16 (a shift) are base AArch64.
template <DType kW>
inline float32x4_t Load4(const void* p, int64_t i) {
  if constexpr (kW == DType::kF32) {
    return vld1q_f32(static_cast<const float*>(p) + i);
  } else if constexpr (kW == DType::kF16) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(p) + i)));
  } else {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(p) + i), 16));
  }
}

// exp(x) for x in [-87, 88], the Cephes polynomial of the AVX2 twin: relative error < 2e-7.
inline float32x4_t Exp(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
  const float32x4_t fx = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  x = vfmsq_f32(x, fx, vdupq_n_f32(0.693359375f));
  x = vfmsq_f32(x, fx, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t y = vdupq_n_f32(1.9875691500E-4f);
  y = vfmaq_f32(vdupq_n_f32(1.3981999507E-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(8.3334519073E-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(4.1665795894E-2f), y, x);
  y = vfmaq_f32(vdupq_n_f32(1.6666665459E-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(5.0000001201E-1f), y, x);
  y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0f)), y, vmulq_f32(x, x));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(fx), vdupq_n_s32(127)), 23);
  return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

// sum x*y over n floats.
inline float Dot(const float* x, const float* y, int n) {
  float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
  }
  for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
  float s = vaddvq_f32(vaddq_f32(a0, a1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace
}  // namespace mobilellm::neon
