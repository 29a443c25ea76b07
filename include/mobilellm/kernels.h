// KernelTable: one function pointer per op, one table per instruction set.
//
// This is the registry the design rests on: the engine calls ops only through a table; the tests
// run every op of every table the CPU supports against the scalar reference table ("ref", the
// executable spec in kernels/ref.h); the benchmarks time every (op, table) pair. Adding a table
// (AVX-512, NEON, ...) adds it to all three.
//
// Conventions: activations are f32; weight matrices W are [rows, cols] row-major in the dtype the
// file stores (f32, f16 or bf16). No op allocates. Pointers need no particular alignment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mobilellm/cpu.h"
#include "mobilellm/format.h"

namespace mobilellm {

// y[t * y_stride + r] = sum_k x[t * cols + k] * W[r, k]  for t in [0, n_tokens), r in [r0, r1).
// x and y must not alias. The caller splits [0, rows) across threads.
using MatmulFn = void (*)(const float* x, int n_tokens, const void* w, int cols, int r0, int r1,
                          float* y, int y_stride);

struct KernelTable {
  const char* name;      // "ref", "avx2", ...
  const char* requires;  // CPU features needed, for messages: "avx2 fma f16c"
  bool (*supported)(const CpuFeatures&);

  // Indexed by format::DType (f32, f16, bf16).
  MatmulFn matmul[3];
  // dst[0..n) = float(src[0..n)) for a row of the given dtype (embedding lookup).
  void (*row_to_f32[3])(const void* src, float* dst, int n);

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
  // Rotates n_heads heads of head_dim in place; cos/sin hold head_dim/2 values for this position.
  // style: format::RopeStyle.
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
               uint32_t style);
};

// Every table compiled into this binary, reference first.
const std::vector<const KernelTable*>& AllKernelTables();

// The best supported table, or the one MOBILELLM_ISA names (ref, avx2, ...). An unknown or
// unsupported name in MOBILELLM_ISA yields an error message in *error and the best table.
const KernelTable& SelectKernels(std::string* error = nullptr);

}  // namespace mobilellm
