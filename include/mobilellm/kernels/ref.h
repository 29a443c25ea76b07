// The scalar reference kernels: the executable specification of every op.
//
// Plain C++ loops, no intrinsics, written to read like the PyTorch they mirror. Every SIMD table
// is tested against these. They are also a complete, portable table of their own ("ref").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "mobilellm/format.h"
#include "mobilellm/kernels.h"
#include "mobilellm/tensor.h"

namespace mobilellm::ref {
// Internal linkage: every kernel TU gets its own copy compiled with its own ISA flags. Shared
// inline or template code would be merged across TUs by the linker, and an AVX-512 build of a
// function could end up serving the portable table (SIGILL on older CPUs).
namespace {

template <DType kW>
inline float WeightAt(const void* w, int64_t i) {
  if constexpr (kW == DType::kF32) return static_cast<const float*>(w)[i];
  if constexpr (kW == DType::kF16) return F16ToF32(static_cast<const uint16_t*>(w)[i]);
  if constexpr (kW == DType::kBF16) return BF16ToF32(static_cast<const uint16_t*>(w)[i]);
  return 0.0f;
}

// Quantized matrices (format.h), planar layout: the f16 block scales follow the quants.
inline const uint16_t* Scales(const WeightView& w) {
  const int64_t n = int64_t(w.rows) * w.cols;
  return reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w.data) +
                                           (w.dtype == DType::kQ8_0 ? n : n / 2));
}

// Panel layout (format.h): block b of the panel holding row r is its 16 f16 scales, then its
// quants.
inline int PanelBlockBytes(const WeightView& w) {
  return w.dtype == DType::kQ8_0 ? 544 : 288;
}
inline const uint8_t* PanelBlock(const WeightView& w, int r, int b) {
  const int64_t nb = w.cols / format::kBlock, block = PanelBlockBytes(w);
  return static_cast<const uint8_t*>(w.data) + (r / format::kPanelRows * nb + b) * block;
}
inline const uint16_t* PanelScales(const WeightView& w, int r, int b) {
  return reinterpret_cast<const uint16_t*>(PanelBlock(w, r, b));
}
inline const uint8_t* PanelQuants(const WeightView& w, int r, int b) {
  return PanelBlock(w, r, b) + 2 * format::kPanelRows;
}

// The f16 scale of block b of row r.
inline uint16_t ScaleAt(const WeightView& w, int r, int b) {
  if (w.layout == format::Layout::kPanels) return PanelScales(w, r, b)[r % format::kPanelRows];
  return Scales(w)[int64_t(r) * (w.cols / format::kBlock) + b];
}

// The integer quant of element k of row r: q8_0 as stored, q4_0 unpacked to [-8, 7].
template <DType kW>
inline int QuantAt(const WeightView& w, int r, int k) {
  const int j = k % format::kBlock;
  if (w.layout == format::Layout::kPanels) {
    const uint8_t* q = PanelQuants(w, r, k / format::kBlock);
    const int l = r % format::kPanelRows, g = j / 4, i = j % 4;
    if constexpr (kW == DType::kQ8_0) return int8_t(q[(g * 16 + l) * 4 + i]);
    const uint8_t byte = q[((g / 2) * 16 + l) * 4 + i];
    return (g % 2 == 0 ? byte & 15 : byte >> 4) - 8;
  }
  if constexpr (kW == DType::kQ8_0) {
    return static_cast<const int8_t*>(w.data)[int64_t(r) * w.cols + k];
  } else {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + int64_t(r) * w.cols / 2;
    const uint8_t byte = row[k / format::kBlock * 16 + (j & 15)];
    return (j < 16 ? byte & 15 : byte >> 4) - 8;
  }
}

// y[t, r] = x[t, :] . W[r, :]
template <DType kW>
void Matmul(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int y_stride) {
  for (int t = 0; t < in.n_tokens; ++t) {
    for (int r = r0; r < r1; ++r) {
      float sum = 0.0f;
      if constexpr (format::IsQuantized(uint32_t(kW))) {
        const int nb = w.cols / format::kBlock;
        for (int b = 0; b < nb; ++b) {
          int32_t isum = 0;
          for (int j = 0; j < format::kBlock; ++j) {
            const int k = b * format::kBlock + j;
            isum += int32_t(in.q[int64_t(t) * in.cols + k]) * QuantAt<kW>(w, r, k);
          }
          sum += float(isum) * (F16ToF32(ScaleAt(w, r, b)) * in.d[int64_t(t) * nb + b]);
        }
      } else {
        for (int k = 0; k < w.cols; ++k)
          sum += in.x[int64_t(t) * in.cols + k] * WeightAt<kW>(w.data, int64_t(r) * w.cols + k);
      }
      y[int64_t(t) * y_stride + r] = sum;
    }
  }
}

template <DType kW>
void RowToF32(const WeightView& w, int row, float* dst) {
  for (int k = 0; k < w.cols; ++k) {
    if constexpr (format::IsQuantized(uint32_t(kW))) {
      dst[k] = float(QuantAt<kW>(w, row, k)) * F16ToF32(ScaleAt(w, row, k / format::kBlock));
    } else {
      dst[k] = WeightAt<kW>(w.data, int64_t(row) * w.cols + k);
    }
  }
}

// Per block of 32: d = max|x| / 127, q = round-half-even(x / d) (as 1/d times x, like SIMD twins).
inline void QuantizeQ8(const float* x, int n, int8_t* q, float* d) {
  for (int b = 0; b < n / format::kBlock; ++b) {
    const float* xb = x + b * format::kBlock;
    float amax = 0.0f;
    for (int j = 0; j < format::kBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    d[b] = scale;
    for (int j = 0; j < format::kBlock; ++j)
      q[b * format::kBlock + j] = int8_t(std::nearbyint(xb[j] * inv));
  }
}

// HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then * weight.
inline void RmsNorm(const float* x, const float* w, int n, float eps, float* out) {
  float ss = 0.0f;
  for (int i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = (x[i] * inv) * w[i];
}

// softmax(x) in place; returns log sum_i exp(x[i]) of the input, which attention over parts of
// the keys needs (MergeAttention).
inline float SoftmaxLogSumExp(float* x, int n) {
  float max = x[0];
  for (int i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv;
  return max + std::log(sum);
}

// SwiGLU's gate: silu(g) * u, silu(g) = g / (1 + exp(-g)).
inline void SiluMul(float* gate, const float* up, int n) {
  for (int i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

inline void Add(float* y, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += x[i];
}

// softmax(scale * q K^T) V for one query head, as PyTorch's scaled_dot_product_attention; the
// cache holds f32 or f16 (kKV).
template <DType kKV>
void AttendOne(const float* q, const void* keys, const void* values, int n_keys, int stride, int hd,
               float scale, float* scores, float* out, float* lse) {
  for (int p = 0; p < n_keys; ++p) {
    float sum = 0.0f;
    for (int i = 0; i < hd; ++i) sum += q[i] * WeightAt<kKV>(keys, KeyIndex(p, i, hd));
    scores[p] = sum * scale;
  }
  const float log_sum = SoftmaxLogSumExp(scores, n_keys);
  if (lse) *lse = log_sum;
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int p = 0; p < n_keys; ++p)
    for (int i = 0; i < hd; ++i)
      out[i] += scores[p] * WeightAt<kKV>(values, int64_t(p) * stride + i);
}

// The attend op for a table whose kernel takes one head at a time (kOne has AttendOne's
// signature): the n_q heads of the group one after another, each reading the keys and values.
template <void (*kOne)(const float*, const void*, const void*, int, int, int, float, float*, float*,
                       float*)>
void AttendHeads(const float* q, int n_q, const void* keys, const void* values, int n_keys,
                 int stride, int hd, float scale, float* scores, float* out, float* lse) {
  for (int h = 0; h < n_q; ++h)
    kOne(q + h * hd, keys, values, n_keys, stride, hd, scale, scores + h * n_keys, out + h * hd,
         lse ? lse + h : nullptr);
}

template <DType kKV>
void Attend(const float* q, int n_q, const void* keys, const void* values, int n_keys, int stride,
            int hd, float scale, float* scores, float* out, float* lse) {
  AttendHeads<AttendOne<kKV>>(q, n_q, keys, values, n_keys, stride, hd, scale, scores, out, lse);
}

// HF: out = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[h:], x[:h]), h = head_dim / 2.
inline void Rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
                 uint32_t style) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = style == uint32_t(format::RopeStyle::kHalf) ? i : 2 * i;
      const int b = style == uint32_t(format::RopeStyle::kHalf) ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos[i] - x1 * sin[i];
      v[b] = x1 * cos[i] + x0 * sin[i];
    }
  }
}

inline void ToF16(const float* x, int n, uint16_t* out) {
  for (int i = 0; i < n; ++i) out[i] = F32ToF16(x[i]);
}

// The reference variants: each serves every call of its type, so every table ends with them.
constexpr MatmulKernel kMatmuls[] = {
    {.name = "f32_matmul_ref",
     .weights = DType::kF32,
     .layouts = MatmulKernel::kAnyLayout,
     .fn = Matmul<DType::kF32>},
    {.name = "f16_matmul_ref",
     .weights = DType::kF16,
     .layouts = MatmulKernel::kAnyLayout,
     .fn = Matmul<DType::kF16>},
    {.name = "bf16_matmul_ref",
     .weights = DType::kBF16,
     .layouts = MatmulKernel::kAnyLayout,
     .fn = Matmul<DType::kBF16>},
    {.name = "q8_0_q8_matmul_ref",
     .weights = DType::kQ8_0,
     .layouts = MatmulKernel::kAnyLayout,
     .fn = Matmul<DType::kQ8_0>},
    {.name = "q4_0_q8_matmul_ref",
     .weights = DType::kQ4_0,
     .layouts = MatmulKernel::kAnyLayout,
     .fn = Matmul<DType::kQ4_0>},
};
constexpr AttendKernel kAttends[] = {
    {.name = "f32_attend_ref", .kv = DType::kF32, .fn = Attend<DType::kF32>},
    {.name = "f16_attend_ref", .kv = DType::kF16, .fn = Attend<DType::kF16>},
};
constexpr RowToF32Fns kRowToF32 = {.f32 = RowToF32<DType::kF32>,
                                   .f16 = RowToF32<DType::kF16>,
                                   .bf16 = RowToF32<DType::kBF16>,
                                   .q8_0 = RowToF32<DType::kQ8_0>,
                                   .q4_0 = RowToF32<DType::kQ4_0>};

}  // namespace
}  // namespace mobilellm::ref
