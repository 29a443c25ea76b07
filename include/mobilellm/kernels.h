// KernelTable: one function pointer per op, one table per instruction set.
//
// This is the registry the design rests on: the engine calls ops only through a table; the tests
// run every op of every table the CPU supports against the scalar reference table ("ref", the
// executable spec in kernels/ref.h); bench/kernels_bench times each table's matmul, attend and
// elementwise ops at the model's shapes (not row_to_f32, add, axpy or to_f16: microseconds a
// pass). Adding a table (AVX-512, NEON, ...) adds it to all three.
//
// Conventions: activations are f32; weight matrices W are [rows, cols] in the dtype the file
// stores (f32, f16, bf16, q8_0 or q4_0; quantized ones planar or in panels, as WeightView says).
// No op allocates. Pointers need no particular alignment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mobilellm/cpu.h"
#include "mobilellm/format.h"
#include "mobilellm/tensor.h"

namespace mobilellm {

// A weight matrix as the kernels see it: [rows, cols] of `dtype`, laid out as format.h says
// (quantized types: planar, all quants then all f16 block scales, or in panels of 16 rows).
struct WeightView {
  const void* data;
  DType dtype;
  int rows, cols;
  format::Layout layout = format::Layout::kRows;
};

// The input of a matmul: x [n_tokens, cols] in f32 and, when the weights are quantized, the same
// rows as int8 blocks (q [n_tokens, cols], d [n_tokens, cols / 32]) made by quantize_q8.
struct MatmulInput {
  const float* x;
  const int8_t* q;
  const float* d;
  int n_tokens;
  int cols;
};

// y[t * y_stride + r] = sum_k x[t, k] * W[r, k]  for t in [0, n_tokens), r in [r0, r1).
// Quantized weights use the int8 activations: sum_b dW[r, b] * dx[t, b] * sum_j qW * qx.
// y must not alias the input. The caller splits [0, rows) across threads; with Layout::kPanels,
// r0 and r1 are multiples of 16.
using MatmulFn = void (*)(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                          int y_stride);
using AttendFn = void (*)(const float* q, int n_q, const void* keys, const void* values, int n_keys,
                          int stride, int hd, float scale, float* scores, float* out, float* lse);

// The attention cache holds keys in blocks of kKeyBlock positions, each block [hd][kKeyBlock]
// (position-minor), so that one SIMD register holds one dimension of consecutive positions and
// q . key for 16 positions is hd FMAs with no horizontal sums. Values stay in rows: the weighted
// sum over positions wants a row per position. Element i of the key at position p:
constexpr int kKeyBlock = 16;
constexpr int64_t KeyIndex(int p, int i, int hd) {
  return (int64_t(p) / kKeyBlock * hd + i) * kKeyBlock + p % kKeyBlock;
}

// Weight types a kernel table serves, in table order.
inline constexpr int kNumWeightTypes = 5;
constexpr int WeightTypeIndex(DType dt) {
  switch (dt) {
    case DType::kF32:
      return 0;
    case DType::kF16:
      return 1;
    case DType::kBF16:
      return 2;
    case DType::kQ8_0:
      return 3;
    case DType::kQ4_0:
      return 4;
    default:
      return -1;
  }
}

struct KernelTable {
  const char* name;      // "ref", "avx2", ...
  const char* requires;  // CPU features needed, for messages: "avx2 fma f16c"
  bool (*supported)(const CpuFeatures&);

  // Indexed by WeightTypeIndex: f32, f16, bf16, q8_0, q4_0.
  MatmulFn matmul[kNumWeightTypes];
  // dst[0..cols) = row `row` of w as f32 (embedding lookup).
  void (*row_to_f32[kNumWeightTypes])(const WeightView& w, int row, float* dst);
  // Quantizes n floats (n % 32 == 0) to int8 blocks of 32: d[b] = max|x| / 127, q = round(x / d).
  void (*quantize_q8)(const float* x, int n, int8_t* q, float* d);

  // out = x * rsqrt(mean(x^2) + eps) * w. out may alias x.
  void (*rmsnorm)(const float* x, const float* w, int n, float eps, float* out);
  // In-place softmax over n > 0 values.
  void (*softmax)(float* x, int n);
  // gate = silu(gate) * up
  void (*silu_mul)(float* gate, const float* up, int n);
  // y += x
  void (*add)(float* y, const float* x, int n);
  // returns sum x*y
  float (*dot)(const float* x, const float* y, int n);
  // y += a * x
  void (*axpy)(float a, const float* x, float* y, int n);
  // n_q query heads that share one key/value head (grouped-query attention) against n_keys
  // cached positions: keys in key blocks from the first (KeyIndex), values in rows of hd values,
  // `stride` values apart. For each head h (q and out hold the n_q heads back to back, hd values
  // each): scores[p] = scale * q_h . key_p, softmax over p,
  // out_h = sum_p scores[p] * value_p. scores holds n_q * n_keys floats of scratch; out must not
  // alias the inputs. lse, when not null, gets each head's log sum_p exp(scores[p]) (before the
  // softmax), which is what MergeAttention needs to join attention over parts of the keys.
  // Indexed by the cache type: [0] f32 keys/values, [1] f16 (uint16_t).
  AttendFn attend[2];
  // Rotates n_heads heads of head_dim in place; cos/sin hold head_dim/2 values for this position.
  // style: format::RopeStyle.
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
               uint32_t style);
  // out[i] = x[i] as IEEE binary16, rounded to nearest even (F32ToF16): the f16 KV-cache write.
  void (*to_f16)(const float* x, int n, uint16_t* out);
};

// Attention over all the keys from `parts` attentions over disjoint runs of them (split-K, as in
// flash-decoding): outs [parts][n_q * hd] and lses [parts][n_q] as attend wrote them; out gets
// sum_i exp(lse_i - m) out_i / sum_i exp(lse_i - m), m the largest lse_i, per head.
void MergeAttention(const float* outs, const float* lses, int parts, int n_q, int hd, float* out);

// Every table compiled into this binary, reference first.
const std::vector<const KernelTable*>& AllKernelTables();

// The best supported table, or the one MOBILELLM_ISA names (ref, avx2, ...). An unknown or
// unsupported name in MOBILELLM_ISA yields an error message in *error and the best table.
const KernelTable& SelectKernels(std::string* error = nullptr);

}  // namespace mobilellm
