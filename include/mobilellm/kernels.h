// The kernel registry: every kernel the engine runs, by name, one table per instruction set.
//
// A table holds the elementwise ops (one function each) and, for matmul and attention, its
// variants: each a named kernel (`q4_0_q8_gemv_panels_avx512vnni`: weight type, activation type,
// what, how, instruction set) with the calls it serves. The choice among them is made in one
// place, Matmul() and Attend() below: the first variant of the table's list that serves the call
// runs it; each list ends with the reference kernels, which serve every call. The engine calls
// kernels only through these; tests/kernels_test.cpp checks every variant of every table the CPU
// supports (and each table's choice) against the scalar reference ("ref", the executable spec in
// kernels/ref.h), and bench/kernels_bench.cpp times each variant and elementwise op by name.
//
// Conventions: activations are f32; weight matrices W are [rows, cols] in the dtype the file
// stores (f32, f16, bf16, q8_0 or q4_0; quantized ones planar or in panels, as WeightView says).
// No op allocates. Pointers need no particular alignment.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
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

// A matmul variant: Matmul() below, for the calls the variant serves (MatmulKernel::Serves).
using MatmulFn = void (*)(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y,
                          int y_stride);
// An attention variant: Attend() below, for the calls the variant serves (AttendKernel::Serves).
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

// A matmul variant and the calls it serves (Serves): weight type and layout, token count, blocks
// of 32 per row (quantized types: variants keep per-block values in stack arrays, or pair blocks),
// and rows: a variant with row_multiple m runs on the largest multiple of m rows of [r0, r1), and
// Matmul() hands the rest to the next variant that serves it.
struct MatmulKernel {
  // Layouts a variant reads (bit set).
  static constexpr uint8_t kRows = 1, kPanels = 2, kAnyLayout = 3;

  const char* name;
  DType weights;
  uint8_t layouts = kRows;
  int min_tokens = 1, max_tokens = 0;  // max 0: any
  int max_blocks = 0;                  // 0: any
  int block_multiple = 1;
  int row_multiple = 1;
  MatmulFn fn = nullptr;

  bool Serves(const MatmulInput& in, const WeightView& w, int rows) const {
    const int nb = w.cols / 32;
    const uint8_t layout = w.layout == format::Layout::kPanels ? kPanels : kRows;
    return w.dtype == weights && (layouts & layout) != 0 && in.n_tokens >= min_tokens &&
           (max_tokens == 0 || in.n_tokens <= max_tokens) &&
           (max_blocks == 0 || nb <= max_blocks) && nb % block_multiple == 0 &&
           rows >= row_multiple;
  }
};

// An attention variant and the calls it serves: cache type, head size (0: any) and key count.
struct AttendKernel {
  const char* name;
  DType kv;  // kF32 or kF16
  int head_dim = 0;
  int min_keys = 0;
  AttendFn fn = nullptr;

  bool Serves(DType kv_type, int hd, int n_keys) const {
    return kv_type == kv && (head_dim == 0 || hd == head_dim) && n_keys >= min_keys;
  }
};

// dst[0..cols) = row `row` of w as f32 (embedding lookup), one function per weight type.
using RowToF32Fn = void (*)(const WeightView& w, int row, float* dst);
struct RowToF32Fns {
  RowToF32Fn f32, f16, bf16, q8_0, q4_0;
  void operator()(const WeightView& w, int row, float* dst) const {
    switch (w.dtype) {
      case DType::kF16:
        return f16(w, row, dst);
      case DType::kBF16:
        return bf16(w, row, dst);
      case DType::kQ8_0:
        return q8_0(w, row, dst);
      case DType::kQ4_0:
        return q4_0(w, row, dst);
      default:
        return f32(w, row, dst);
    }
  }
};

// Joins lists of variants into one (a table's list from the lists of the ISA headers it uses).
template <typename T, size_t... N>
constexpr std::array<T, (N + ...)> ConcatKernels(const T (&... lists)[N]) {
  std::array<T, (N + ...)> out{};
  size_t i = 0;
  ((std::copy(lists, lists + N, out.begin() + i), i += N), ...);
  return out;
}

// One table per instruction set, filled by field name (src/kernels/*.cpp).
struct KernelTable {
  const char* name;      // "ref", "avx2", ...
  const char* features;  // CPU features needed, for messages: "avx2 fma f16c"
  bool (*supported)(const CpuFeatures&);

  // The matmul variants in the order Matmul() tries them; the last ones serve every call.
  std::span<const MatmulKernel> matmuls;
  // The attention variants in the order Attend() tries them; the last ones serve every call.
  std::span<const AttendKernel> attends;

  RowToF32Fns row_to_f32;
  // Quantizes n floats (n % 32 == 0) to int8 blocks of 32: d[b] = max|x| / 127, q = round(x / d).
  void (*quantize_q8)(const float* x, int n, int8_t* q, float* d);
  // out = x * rsqrt(mean(x^2) + eps) * w. out may alias x.
  void (*rmsnorm)(const float* x, const float* w, int n, float eps, float* out);
  // gate = silu(gate) * up
  void (*silu_mul)(float* gate, const float* up, int n);
  // y += x
  void (*add)(float* y, const float* x, int n);
  // Rotates n_heads heads of head_dim in place; cos/sin hold head_dim/2 values for this position.
  // style: format::RopeStyle.
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
               uint32_t style);
  // out[i] = x[i] as IEEE binary16, rounded to nearest even (F32ToF16): the f16 KV-cache write.
  void (*to_f16)(const float* x, int n, uint16_t* out);
};

// The variant of k that serves a matmul of `rows` rows (the first in k.matmuls).
const MatmulKernel& PickMatmul(const KernelTable& k, const MatmulInput& in, const WeightView& w,
                               int rows);

// y[t * y_stride + r] = sum_k x[t, k] * W[r, k]  for t in [0, n_tokens), r in [r0, r1), by the
// variants of k that serve the call (PickMatmul; a variant with a row multiple leaves the rest of
// the rows to the next). Quantized weights use the int8 activations: sum_b dW[r, b] * dx[t, b] *
// sum_j qW * qx. y must not alias the input. The caller splits [0, rows) across threads; with
// Layout::kPanels, r0 and r1 are multiples of 16.
void Matmul(const KernelTable& k, const MatmulInput& in, const WeightView& w, int r0, int r1,
            float* y, int y_stride);

// The variant of k that serves an attention call (the first in k.attends).
const AttendKernel& PickAttend(const KernelTable& k, DType kv, int hd, int n_keys);

// n_q query heads that share one key/value head (grouped-query attention) against n_keys cached
// positions of type kv (f32, or f16 as uint16_t): keys in key blocks from the first (KeyIndex),
// values in rows of hd values, `stride` values apart. For each head h (q and out hold the n_q
// heads back to back, hd values each): scores[p] = scale * q_h . key_p, softmax over p,
// out_h = sum_p scores[p] * value_p. scores holds n_q * n_keys floats of scratch; out must not
// alias the inputs. lse, when not null, gets each head's log sum_p exp(scores[p]) (before the
// softmax), which is what MergeAttention needs to join attention over parts of the keys.
inline void Attend(const KernelTable& k, DType kv, const float* q, int n_q, const void* keys,
                   const void* values, int n_keys, int stride, int hd, float scale, float* scores,
                   float* out, float* lse) {
  PickAttend(k, kv, hd, n_keys)
      .fn(q, n_q, keys, values, n_keys, stride, hd, scale, scores, out, lse);
}

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
