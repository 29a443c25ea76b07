// Every op and every matmul and attention variant of every kernel table this CPU supports,
// against the scalar reference table: the ops and each table's choice of variant as
// Kernels.<Op>/<table>, each variant on every shape it serves as
// KernelVariants.<Op>/<table>_<variant> (and AttendVariants.*).
//
// Sizes probe the SIMD edges (1, lanes - 1, lanes, lanes + 1, 4 * lanes + 3) and the real
// MobileLLM shapes. Tolerances: a dot product of n terms may differ from the reference by
// summation order only, bounded by ~n * eps * sum|x_i * w_i|; elementwise ops by a few ulps;
// exp-based ops (attention, SiLU) by the SIMD exp's 2e-7 relative error plus rounding.
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mobilellm/kernels.h"
#include "mobilellm/quantize.h"
#include "mobilellm/tensor.h"
#include "test_util.h"

namespace mobilellm {
#if defined(MOBILELLM_TEST_TWINS)
extern const KernelTable kAvxVnniEvexTwin;  // tests/avxvnni_evex.cpp
extern const KernelTable kAmxEmulatedTwin;  // tests/amx_emulated.cpp
#endif
namespace {

const KernelTable& Ref() {
  return *AllKernelTables().front();
}

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint8_t> Encode(const std::vector<float>& v, DType dt) {
  std::vector<uint8_t> out(v.size() * format::DTypeSize(uint32_t(dt)));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::kF32)
      std::memcpy(&out[4 * i], &v[i], 4);
    else {
      const uint16_t h = dt == DType::kF16 ? F32ToF16(v[i]) : F32ToBF16(v[i]);
      std::memcpy(&out[2 * i], &h, 2);
    }
  }
  return out;
}

void SkipUnlessSupported(const KernelTable& k) {
  if (!k.supported(CpuFeatures::Get()))
    GTEST_SKIP() << "table " << k.name << " needs " << k.features << "; this CPU has "
                 << CpuFeatures::Get().ToString();
}

class Kernels : public ::testing::TestWithParam<const KernelTable*> {
 protected:
  void SetUp() override { SkipUnlessSupported(*GetParam()); }
  const KernelTable& k() { return *GetParam(); }
};

// What a matmul test runs: a table's choice of variants (Matmul), or one variant on the calls it
// serves.
struct MatmulUnderTest {
  const KernelTable* table;
  const MatmulKernel* variant;  // null: the table's choice

  bool Serves(DType dt, format::Layout layout, int rows, int cols, int n_tokens) const {
    return !variant || variant->Serves(MatmulInput{nullptr, nullptr, nullptr, n_tokens, cols},
                                       WeightView{nullptr, dt, rows, cols, layout}, rows);
  }
  // Rows [r0, r1) when Serves(); returns the end of the rows it computed (a variant with a row
  // multiple leaves the rest).
  int Run(const MatmulInput& in, const WeightView& w, int r0, int r1, float* y, int stride) const {
    if (!variant) {
      Matmul(*table, in, w, r0, r1, y, stride);
      return r1;
    }
    const int end = r0 + (r1 - r0) / variant->row_multiple * variant->row_multiple;
    variant->fn(in, w, r0, end, y, stride);
    return end;
  }
};

constexpr int kSizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 35, 64, 576, 1536};
constexpr float kCanary = 12345.0f;

// Float weights against the reference; adds the number of calls checked to *checked.
void CheckMatmulFloatWeights(const MatmulUnderTest& m, int* checked) {
  const int rows_list[] = {1, 3, 4, 5, 17, 64};
  // 13: two 6-token steps of the panel GEMM and one token left; 135: its 128-token blocks.
  const int tokens_list[] = {1, 2, 3, 5, 13, 135};
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int cols : kSizes) {
      for (int rows : rows_list) {
        for (int n_tok : tokens_list) {
          const int r0 = rows > 4 ? 1 : 0, r1 = rows;  // a sub-range, as a thread would get
          if (!m.Serves(dt, format::Layout::kRows, r1 - r0, cols, n_tok)) continue;
          const auto wf = Random(size_t(rows) * cols, 1 + rows + cols, 0.5f);
          const auto w = Encode(wf, dt);
          const auto x = Random(size_t(n_tok) * cols, 7 + cols);
          const int stride = rows + 1;  // y rows are strided; the gap is a canary
          std::vector<float> y(size_t(n_tok) * stride, kCanary), y_ref = y;
          const MatmulInput in{x.data(), nullptr, nullptr, n_tok, cols};
          const WeightView wv{w.data(), dt, rows, cols};
          const int end = m.Run(in, wv, r0, r1, y.data(), stride);
          Matmul(Ref(), in, wv, r0, r1, y_ref.data(), stride);
          ++*checked;
          for (int t = 0; t < n_tok; ++t) {
            for (int r = 0; r < stride; ++r) {
              const float got = y[size_t(t) * stride + r], want = y_ref[size_t(t) * stride + r];
              if (r < r0 || r >= end) {
                ASSERT_EQ(got, kCanary) << "wrote outside [r0, r1) at row " << r;
                continue;
              }
              double mag = 0;
              for (int c = 0; c < cols; ++c)
                mag += std::fabs(double(x[size_t(t) * cols + c]) * wf[size_t(r) * cols + c]);
              const double tol = 2.0 * cols * 6e-8 * mag + 1e-6;
              ASSERT_NEAR(got, want, tol)
                  << format::DTypeName(uint32_t(dt)) << " rows " << rows << " cols " << cols
                  << " tokens " << n_tok << " at t " << t << " r " << r;
            }
          }
        }
      }
    }
  }
}

TEST_P(Kernels, MatmulFloatWeights) {
  int checked = 0;
  CheckMatmulFloatWeights({&k(), nullptr}, &checked);
}

TEST_P(Kernels, QuantizeQ8IsBitExact) {
  for (int n : {32, 64, 96, 352, 576, 1536}) {
    auto x = Random(n, n, 2.0f);
    x[3] = 0.0f;
    std::fill(x.begin() + 32 * (n / 64), x.begin() + 32 * (n / 64) + 32,
              0.0f);  // an all-zero block
    std::vector<int8_t> q(n + 1, 77), q_ref(n + 1, 77);
    std::vector<float> d(n / 32 + 1, kCanary), d_ref(n / 32 + 1, kCanary);
    k().quantize_q8(x.data(), n, q.data(), d.data());
    Ref().quantize_q8(x.data(), n, q_ref.data(), d_ref.data());
    ASSERT_EQ(q, q_ref) << n;
    ASSERT_EQ(d, d_ref) << n;
  }
}

std::vector<uint8_t> Quantized(const std::vector<float>& f, int rows, int cols, DType dt,
                               format::Layout layout = format::Layout::kRows) {
  const uint64_t shape[2] = {uint64_t(rows), uint64_t(cols)};
  std::vector<uint8_t> w(format::TensorBytes(uint32_t(dt), 2, shape));
  QuantizeMatrix(f.data(), rows, cols, dt, w.data(), layout);
  return w;
}

// n_tokens rows of random activations and their int8 blocks, as the engine makes them.
struct Activations {
  Activations(int n_tokens, int cols, uint32_t seed)
      : n_tokens(n_tokens),
        cols(cols),
        x(Random(size_t(n_tokens) * cols, seed)),
        q(x.size()),
        d(x.size() / 32) {
    for (int t = 0; t < n_tokens; ++t)
      Ref().quantize_q8(&x[size_t(t) * cols], cols, &q[size_t(t) * cols],
                        &d[size_t(t) * cols / 32]);
  }
  MatmulInput Input() const { return {x.data(), q.data(), d.data(), n_tokens, cols}; }
  int n_tokens, cols;
  std::vector<float> x;
  std::vector<int8_t> q;
  std::vector<float> d;
};

// Quantized weights: the SIMD table against the reference on the same int8 inputs (they differ
// only in float summation order), and the reference against the f32 product within the error
// quantization itself introduces: sum |x| |w - w_q| + |w| |x - x_q| + |w - w_q| |x - x_q|.
void CheckMatmulQuantizedWeights(const MatmulUnderTest& m, int* checked) {
  const int rows_list[] = {1, 4, 5, 17, 64};
  for (DType dt : {DType::kQ8_0, DType::kQ4_0}) {
    // 2560 columns: more than one 64-block chunk; 17 tokens: more than one group of 16.
    for (int cols : {32, 64, 96, 352, 576, 1536, 2560}) {
      for (int rows : rows_list) {
        for (int n_tok : {1, 2, 3, 17}) {
          if (n_tok == 17 && rows > 17) continue;  // keeps the scalar reference quick
          const int r0 = rows > 4 ? 1 : 0, r1 = rows, stride = rows + 1;
          if (!m.Serves(dt, format::Layout::kRows, r1 - r0, cols, n_tok)) continue;
          const int nb = cols / 32;
          const auto wf = Random(size_t(rows) * cols, 3 + rows + cols, 0.5f);
          const auto w = Quantized(wf, rows, cols, dt);
          const Activations act(n_tok, cols, 11 + cols);
          const auto& x = act.x;
          const auto& xd = act.d;
          const MatmulInput in = act.Input();
          const WeightView wv{w.data(), dt, rows, cols};
          std::vector<float> y(size_t(n_tok) * stride, kCanary), y_ref = y;
          const int end = m.Run(in, wv, r0, r1, y.data(), stride);
          Matmul(Ref(), in, wv, r0, r1, y_ref.data(), stride);
          ++*checked;
          std::vector<float> wdeq(static_cast<size_t>(cols));
          for (int t = 0; t < n_tok; ++t) {
            for (int r = 0; r < stride; ++r) {
              const float got = y[size_t(t) * stride + r], want = y_ref[size_t(t) * stride + r];
              if (r < r0 || r >= end) {
                ASSERT_EQ(got, kCanary);
                continue;
              }
              Ref().row_to_f32(wv, r, wdeq.data());
              double mag = 0, exact = 0, qbound = 0;
              for (int c = 0; c < cols; ++c) {
                const double xv = x[size_t(t) * cols + c], wv_ = wf[size_t(r) * cols + c];
                mag += std::fabs(xv * wdeq[c]);
                exact += xv * wv_;
                const double dw = std::fabs(wdeq[c] - wv_), dx = xd[size_t(t) * nb + c / 32] / 2;
                qbound += std::fabs(xv) * dw + std::fabs(wv_) * dx + dw * dx;
              }
              ASSERT_NEAR(got, want, 2.0 * nb * 6e-8 * mag + 1e-5)
                  << format::DTypeName(uint32_t(dt)) << " rows " << rows << " cols " << cols
                  << " t " << t << " r " << r;
              ASSERT_NEAR(want, exact, qbound * 1.01 + 1e-5)
                  << "quantization error beyond its bound";
            }
          }
        }
      }
    }
  }
}

TEST_P(Kernels, MatmulQuantizedWeights) {
  int checked = 0;
  CheckMatmulQuantizedWeights({&k(), nullptr}, &checked);
}

// The panel layout (format.h) holds the same numbers as the planar one: the reference gives
// bit-identical results on both, and every table's panel kernels (decode: 1 token; prefill: more,
// past a group of 64) match the reference within float summation order. Sub-ranges of rows are
// multiples of 16, as the engine splits them (6 panels: a decode over four panel streams and the
// panels left over); wider than 256 blocks exercises the fallbacks.
void CheckMatmulQuantizedPanels(const MatmulUnderTest& m, int* checked) {
  for (DType dt : {DType::kQ8_0, DType::kQ4_0}) {
    for (int cols : {32, 96, 576, 1536, 2560, 8224}) {
      for (int rows : {16, 48, 112}) {
        for (int n_tok : {1, 2, 5, 16, 17, 70}) {  // AMX: one tile; one and a 1-token tail; 4 + 6
          if (cols > 2560 && n_tok > 2) continue;  // keeps the scalar reference quick
          const int r0 = rows > 16 ? 16 : 0, r1 = rows, stride = rows + 3;
          const bool served = m.Serves(dt, format::Layout::kPanels, r1 - r0, cols, n_tok);
          if (!served && m.variant &&
              !m.variant->Serves(MatmulInput{nullptr, nullptr, nullptr, n_tok, cols},
                                 WeightView{nullptr, dt, rows, cols}, r1 - r0))
            continue;  // a variant that serves neither layout of this call
          const int nb = cols / 32;
          const auto wf = Random(size_t(rows) * cols, 5 + rows + cols, 0.5f);
          const auto w_rows = Quantized(wf, rows, cols, dt);
          const auto w_pan = Quantized(wf, rows, cols, dt, format::Layout::kPanels);
          ASSERT_EQ(w_rows.size(), w_pan.size());
          const Activations act(n_tok, cols, 13 + cols);
          const auto& x = act.x;
          const MatmulInput in = act.Input();
          const WeightView rows_v{w_rows.data(), dt, rows, cols};
          const WeightView pan_v{w_pan.data(), dt, rows, cols, format::Layout::kPanels};
          std::vector<float> y(size_t(n_tok) * stride, kCanary), y_ref = y, y_ref_pan = y;
          // A variant of the planar layout runs on the planar twin of the panels.
          const int end = m.Run(in, served ? pan_v : rows_v, r0, r1, y.data(), stride);
          Matmul(Ref(), in, rows_v, r0, r1, y_ref.data(), stride);
          Matmul(Ref(), in, pan_v, r0, r1, y_ref_pan.data(), stride);
          ++*checked;
          ASSERT_EQ(y_ref, y_ref_pan) << "reference differs between layouts";
          double mag_max = 0;
          for (float v : wf) mag_max = std::max(mag_max, double(std::fabs(v)));
          for (int t = 0; t < n_tok; ++t) {
            for (int r = 0; r < stride; ++r) {
              const float got = y[size_t(t) * stride + r], want = y_ref[size_t(t) * stride + r];
              if (r < r0 || r >= end) {
                ASSERT_EQ(got, kCanary) << "wrote outside [r0, r1): row " << r;
                continue;
              }
              double mag = 0;
              for (int c = 0; c < cols; ++c) mag += std::fabs(x[size_t(t) * cols + c]) * mag_max;
              ASSERT_NEAR(got, want, 2.0 * nb * 6e-8 * mag + 1e-5)
                  << format::DTypeName(uint32_t(dt)) << " rows " << rows << " cols " << cols
                  << " tokens " << n_tok << " t " << t << " r " << r;
            }
          }
          std::vector<float> a(static_cast<size_t>(cols)), b = a;
          for (int r : {0, 5, rows - 1}) {
            m.table->row_to_f32(pan_v, r, a.data());
            Ref().row_to_f32(rows_v, r, b.data());
            ASSERT_EQ(a, b) << "row " << r;
          }
        }
      }
    }
  }
}

TEST_P(Kernels, MatmulQuantizedPanels) {
  int checked = 0;
  CheckMatmulQuantizedPanels({&k(), nullptr}, &checked);
}

TEST_P(Kernels, RowToF32IsExact) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (int n : {32, 64, 576}) {
      const auto f = Random(size_t(3) * n, n);
      const auto v = format::IsQuantized(uint32_t(dt)) ? Quantized(f, 3, n, dt) : Encode(f, dt);
      const WeightView wv{v.data(), dt, 3, n};
      std::vector<float> got(n + 1, kCanary), want(n + 1, kCanary);
      k().row_to_f32(wv, 2, got.data());
      Ref().row_to_f32(wv, 2, want.data());
      ASSERT_EQ(got, want) << format::DTypeName(uint32_t(dt)) << " n " << n;
    }
  }
}

TEST_P(Kernels, RmsNorm) {
  for (int n : kSizes) {
    const auto x = Random(n, n), w = Random(n, n + 1);
    std::vector<float> got(n + 1, kCanary), want(n + 1, kCanary);
    k().rmsnorm(x.data(), w.data(), n, 1e-5f, got.data());
    Ref().rmsnorm(x.data(), w.data(), n, 1e-5f, want.data());
    for (int i = 0; i <= n; ++i)
      ASSERT_NEAR(got[i], want[i], 1e-5f * (std::fabs(want[i]) + 1e-3f)) << "n " << n << " i " << i;
    // In place, as the engine may call it.
    std::vector<float> inplace = x;
    k().rmsnorm(inplace.data(), w.data(), n, 1e-5f, inplace.data());
    for (int i = 0; i < n; ++i)
      ASSERT_NEAR(inplace[i], want[i], 1e-5f * (std::fabs(want[i]) + 1e-3f));
  }
}

TEST_P(Kernels, SiluMul) {
  for (int n : kSizes) {
    auto got = Random(n, n, 3.0f);
    const auto up = Random(n, n + 5);
    got.push_back(kCanary);
    auto want = got;
    k().silu_mul(got.data(), up.data(), n);
    Ref().silu_mul(want.data(), up.data(), n);
    for (int i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], want[i], 1e-6f + 1e-6f * std::fabs(want[i])) << "n " << n;
    EXPECT_EQ(got[n], kCanary);
  }
}

TEST_P(Kernels, Add) {
  for (int n : kSizes) {
    const auto x = Random(n, n), y0 = Random(n, n + 3);
    auto a = y0, b = y0;
    a.push_back(kCanary), b.push_back(kCanary);
    k().add(a.data(), x.data(), n);
    Ref().add(b.data(), x.data(), n);
    ASSERT_EQ(a, b) << "add is exact, n " << n;
  }
}

TEST_P(Kernels, Rope) {
  for (uint32_t style :
       {uint32_t(format::RopeStyle::kHalf), uint32_t(format::RopeStyle::kInterleaved)}) {
    for (int head_dim : {2, 16, 32, 64}) {
      const int n_heads = 3, half = head_dim / 2;
      auto got = Random(size_t(n_heads) * head_dim, head_dim);
      got.push_back(kCanary);
      auto want = got;
      const auto angles = Random(half, 99, 3.0f);
      std::vector<float> cos(half), sin(half);
      for (int i = 0; i < half; ++i) cos[i] = std::cos(angles[i]), sin[i] = std::sin(angles[i]);
      k().rope(got.data(), n_heads, head_dim, cos.data(), sin.data(), style);
      Ref().rope(want.data(), n_heads, head_dim, cos.data(), sin.data(), style);
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-6f * (1 + std::fabs(want[i])));
    }
  }
}

// The f16 cache write rounds exactly as F32ToF16: normal values, ties, the subnormal range,
// overflow to infinity, signed zeros, infinities.
TEST_P(Kernels, ToF16IsExact) {
  std::vector<float> x = Random(1000, 17, 3.0f);
  for (float v : {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6.1e-5f, 3e-6f, -5.96e-8f, 1e-9f,
                  1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, INFINITY, -INFINITY})
    x.push_back(v);
  for (int i = 0; i < 300; ++i) x.push_back(std::ldexp(float(i + 1) / 301, -14 - i % 12));
  for (int n : {1, 7, 8, 9, int(x.size())}) {
    std::vector<uint16_t> got(size_t(n) + 1, 0xBEEF), want = got;
    k().to_f16(x.data(), n, got.data());
    Ref().to_f16(x.data(), n, want.data());
    ASSERT_EQ(got, want) << n;
  }
}

// Keys given as rows (`stride` apart) in the cache's key blocks (kernels.h: KeyIndex). The lanes
// of a partial last block hold NaN: no kernel may let them into a result.
std::vector<float> KeyBlocks(const std::vector<float>& rows, int n_keys, int hd, int stride) {
  const int blocks = (n_keys + kKeyBlock - 1) / kKeyBlock;
  std::vector<float> out(size_t(blocks) * kKeyBlock * hd, std::nanf(""));
  for (int p = 0; p < n_keys; ++p)
    for (int i = 0; i < hd; ++i) out[size_t(KeyIndex(p, i, hd))] = rows[size_t(p) * stride + i];
  return out;
}

// What an attention test runs: a table's choice of variant (Attend), or one variant on the calls
// it serves.
struct AttendUnderTest {
  const KernelTable* table;
  const AttendKernel* variant;  // null: the table's choice

  bool Serves(DType kv, int hd, int n_keys) const {
    return !variant || variant->Serves(kv, hd, n_keys);
  }
  void Run(DType kv, const float* q, int n_q, const void* keys, const void* values, int n_keys,
           int stride, int hd, float scale, float* scores, float* out, float* lse) const {
    if (variant)
      variant->fn(q, n_q, keys, values, n_keys, stride, hd, scale, scores, out, lse);
    else
      Attend(*table, kv, q, n_q, keys, values, n_keys, stride, hd, scale, scores, out, lse);
  }
};

// n_q query heads sharing one key/value head (GQA groups of MobileLLM: 3, 4, 5) against a cache
// (f32 and f16) of key blocks and strided value rows: scores, softmax and the weighted sum of
// values, per head.
void CheckAttend(const AttendUnderTest& a, int* checked) {
  for (int f16 : {0, 1})
    for (int hd : {16, 24, 32, 64, 128})
      for (int n_q : {1, 3, 5})
        for (int n_keys : {1, 2, 7, 16, 17, 100, 600}) {  // 600: AVX-512's one-pass kernel
          const DType kv = f16 ? DType::kF16 : DType::kF32;
          if (!a.Serves(kv, hd, n_keys)) continue;
          ++*checked;
          const int stride = 3 * hd + 5;
          const auto q = Random(size_t(n_q) * hd, hd + n_keys + n_q);
          const auto keys =
              KeyBlocks(Random(size_t(n_keys) * stride, 7 + hd, 2.0f), n_keys, hd, stride);
          const auto values = Random(size_t(n_keys) * stride, 9 + hd);
          const auto keys16 = Encode(keys, DType::kF16), values16 = Encode(values, DType::kF16);
          const void* kp = f16 ? static_cast<const void*>(keys16.data()) : keys.data();
          const void* vp = f16 ? static_cast<const void*>(values16.data()) : values.data();
          std::vector<float> scores(size_t(n_q) * n_keys + 1, kCanary), want_scores = scores;
          std::vector<float> got(size_t(n_q) * hd + 1, kCanary), want = got;
          std::vector<float> got_lse(size_t(n_q) + 1, kCanary), want_lse = got_lse;
          const float scale = 1.0f / std::sqrt(float(hd));
          // Without lse (the usual call), then with it: the same output both times.
          a.Run(kv, q.data(), n_q, kp, vp, n_keys, stride, hd, scale, scores.data(), got.data(),
                nullptr);
          const std::vector<float> got_plain = got;
          a.Run(kv, q.data(), n_q, kp, vp, n_keys, stride, hd, scale, scores.data(), got.data(),
                got_lse.data());
          Attend(Ref(), kv, q.data(), n_q, kp, vp, n_keys, stride, hd, scale, want_scores.data(),
                 want.data(), want_lse.data());
          EXPECT_EQ(got, got_plain);
          for (int i = 0; i < n_q * hd; ++i)
            ASSERT_NEAR(got[i], want[i], 2e-6f * (1 + std::fabs(want[i])))
                << "hd " << hd << " heads " << n_q << " keys " << n_keys << " i " << i;
          for (int h = 0; h < n_q; ++h)
            ASSERT_NEAR(got_lse[h], want_lse[h], 1e-5f * (1 + std::fabs(want_lse[h])))
                << "hd " << hd << " heads " << n_q << " keys " << n_keys << " head " << h;
          EXPECT_EQ(got[size_t(n_q) * hd], kCanary);
          EXPECT_EQ(got_lse[size_t(n_q)], kCanary);
          EXPECT_EQ(scores[size_t(n_q) * n_keys], kCanary);
        }
}

TEST_P(Kernels, Attend) {
  int checked = 0;
  CheckAttend({&k(), nullptr}, &checked);
}

// Attention over all keys equals MergeAttention of attentions over runs of them (the engine's
// multithreaded decode), for cuts at key blocks, including a last run of one key.
TEST_P(Kernels, AttendSplitMerges) {
  for (int f16 : {0, 1})
    for (int n_keys : {17, 33, 64, 257, 1100}) {
      const int hd = 64, n_q = 3, stride = hd;
      const auto q = Random(size_t(n_q) * hd, 41 + n_keys);
      const auto keys = KeyBlocks(Random(size_t(n_keys) * stride, 43, 2.0f), n_keys, hd, stride);
      const auto values = Random(size_t(n_keys) * stride, 47);
      const auto keys16 = Encode(keys, DType::kF16), values16 = Encode(values, DType::kF16);
      const size_t elem = f16 ? 2 : 4;
      const auto* kp = f16 ? reinterpret_cast<const uint8_t*>(keys16.data())
                           : reinterpret_cast<const uint8_t*>(keys.data());
      const auto* vp = f16 ? reinterpret_cast<const uint8_t*>(values16.data())
                           : reinterpret_cast<const uint8_t*>(values.data());
      const float scale = 0.125f;
      std::vector<float> scores(size_t(n_q) * n_keys), whole(size_t(n_q) * hd);
      const DType kv = f16 ? DType::kF16 : DType::kF32;
      Attend(k(), kv, q.data(), n_q, kp, vp, n_keys, stride, hd, scale, scores.data(), whole.data(),
             nullptr);
      const int last = (n_keys - 1) / kKeyBlock * kKeyBlock,
                mid = n_keys / 2 / kKeyBlock * kKeyBlock;
      for (const std::vector<int>& cuts :
           std::vector<std::vector<int>>{{0, kKeyBlock, n_keys},
                                         {0, mid, n_keys},
                                         {0, last, n_keys},
                                         {0, kKeyBlock, mid, last, n_keys}}) {
        const int parts = int(cuts.size()) - 1;
        if (!std::is_sorted(cuts.begin(), cuts.end(), std::less_equal<int>())) continue;  // empty
        std::vector<float> outs(size_t(parts) * n_q * hd), lses(size_t(parts) * n_q);
        for (int i = 0; i < parts; ++i) {
          const size_t koff = size_t(KeyIndex(cuts[i], 0, hd)) * elem,
                       voff = size_t(cuts[i]) * stride * elem;
          Attend(k(), kv, q.data(), n_q, kp + koff, vp + voff, cuts[i + 1] - cuts[i], stride, hd,
                 scale, scores.data(), &outs[size_t(i) * n_q * hd], &lses[size_t(i) * n_q]);
        }
        std::vector<float> merged(size_t(n_q) * hd + 1, kCanary);
        MergeAttention(outs.data(), lses.data(), parts, n_q, hd, merged.data());
        for (int i = 0; i < n_q * hd; ++i)
          ASSERT_NEAR(merged[i], whole[i], 2e-6f * (1 + std::fabs(whole[i])))
              << "keys " << n_keys << " parts " << parts << " cut " << cuts[1] << " i " << i;
        EXPECT_EQ(merged[size_t(n_q) * hd], kCanary);
      }
    }
}

// The engine's tables, and test twins of tables this CPU may lack.
std::vector<const KernelTable*> TablesUnderTest() {
  std::vector<const KernelTable*> tables = AllKernelTables();
#if defined(MOBILELLM_TEST_TWINS)
  tables.push_back(&kAvxVnniEvexTwin);
  tables.push_back(&kAmxEmulatedTwin);
#endif
  return tables;
}

// Every call finds a variant: each table ends with variants that serve every call of each weight
// type and cache type (the reference kernels), and no two variants of a table share a name.
TEST_P(Kernels, EveryCallIsServed) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    bool any = false;
    for (const MatmulKernel& m : k().matmuls)
      any |= m.weights == dt && m.layouts == MatmulKernel::kAnyLayout && m.min_tokens == 1 &&
             m.max_tokens == 0 && m.max_blocks == 0 && m.block_multiple == 1 && m.row_multiple == 1;
    EXPECT_TRUE(any) << format::DTypeName(uint32_t(dt));
  }
  for (DType kv : {DType::kF32, DType::kF16}) {
    bool any = false;
    for (const AttendKernel& a : k().attends)
      any |= a.kv == kv && a.head_dim == 0 && a.min_keys == 0;
    EXPECT_TRUE(any) << format::DTypeName(uint32_t(kv));
  }
  std::set<std::string> names;
  for (const MatmulKernel& m : k().matmuls) EXPECT_TRUE(names.insert(m.name).second) << m.name;
  for (const AttendKernel& a : k().attends) EXPECT_TRUE(names.insert(a.name).second) << a.name;
}

INSTANTIATE_TEST_SUITE_P(AllTables, Kernels, ::testing::ValuesIn(TablesUnderTest()),
                         [](const auto& info) { return std::string(info.param->name); });

// A test's name for a variant of a table: <table>_<variant>.
template <typename Variant>
std::string VariantName(const std::pair<const KernelTable*, const Variant*>& p) {
  return std::string(p.first->name) + "_" + p.second->name;
}

// Every matmul variant of every table, on every shape it serves (at least one).
class KernelVariants
    : public ::testing::TestWithParam<std::pair<const KernelTable*, const MatmulKernel*>> {
 protected:
  void SetUp() override { SkipUnlessSupported(*GetParam().first); }
};

TEST_P(KernelVariants, Matmul) {
  const MatmulUnderTest m{GetParam().first, GetParam().second};
  int checked = 0;
  CheckMatmulFloatWeights(m, &checked);
  CheckMatmulQuantizedWeights(m, &checked);
  CheckMatmulQuantizedPanels(m, &checked);
  EXPECT_GT(checked, 0) << "no test shape is served by " << m.variant->name;
}

std::vector<std::pair<const KernelTable*, const MatmulKernel*>> MatmulVariantsUnderTest() {
  std::vector<std::pair<const KernelTable*, const MatmulKernel*>> out;
  for (const KernelTable* t : TablesUnderTest())
    for (const MatmulKernel& m : t->matmuls) out.push_back({t, &m});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllTables, KernelVariants, ::testing::ValuesIn(MatmulVariantsUnderTest()),
                         [](const auto& info) { return VariantName(info.param); });

// Every attention variant of every table, on every shape it serves (at least one).
class AttendVariants
    : public ::testing::TestWithParam<std::pair<const KernelTable*, const AttendKernel*>> {
 protected:
  void SetUp() override { SkipUnlessSupported(*GetParam().first); }
};

TEST_P(AttendVariants, Attend) {
  int checked = 0;
  CheckAttend({GetParam().first, GetParam().second}, &checked);
  EXPECT_GT(checked, 0) << "no test shape is served by " << GetParam().second->name;
}

std::vector<std::pair<const KernelTable*, const AttendKernel*>> AttendVariantsUnderTest() {
  std::vector<std::pair<const KernelTable*, const AttendKernel*>> out;
  for (const KernelTable* t : TablesUnderTest())
    for (const AttendKernel& a : t->attends) out.push_back({t, &a});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllTables, AttendVariants, ::testing::ValuesIn(AttendVariantsUnderTest()),
                         [](const auto& info) { return VariantName(info.param); });

// The reference RoPE is the HF formula: x * cos + rotate_half(x) * sin.
TEST(RefKernels, RopeMatchesRotateHalf) {
  const int hd = 8;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8}, cos = {0.5f, 0.6f, 0.7f, 0.8f},
                     sin = {0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<float> want(hd);
  for (int i = 0; i < hd; ++i) {
    const float rot = i < hd / 2 ? -x[i + hd / 2] : x[i - hd / 2];
    want[i] = x[i] * cos[i % (hd / 2)] + rot * sin[i % (hd / 2)];
  }
  Ref().rope(x.data(), 1, hd, cos.data(), sin.data(), uint32_t(format::RopeStyle::kHalf));
  for (int i = 0; i < hd; ++i) EXPECT_FLOAT_EQ(x[i], want[i]);
}

TEST(Conversions, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), h) << std::hex << h;
  }
}

TEST(Conversions, F16RoundsToNearestEven) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);         // overflows to inf
  EXPECT_EQ(F32ToF16(1.0f + 0x1p-11f), 0x3C00);  // tie: to even
  EXPECT_EQ(F32ToF16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  EXPECT_EQ(F32ToF16(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(F32ToF16(0x1p-25f), 0x0000);  // tie: to even (zero)
  EXPECT_EQ(F32ToF16(-2.0f), 0xC000);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(NAN))));
}

TEST(Conversions, BF16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBF16(BitsF32(0x3F808000)), 0x3F80);  // tie: to even
  EXPECT_EQ(F32ToBF16(BitsF32(0x3F818000)), 0x3F82);
  EXPECT_EQ(BF16ToF32(0x4049), BitsF32(0x40490000));
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
}

}  // namespace
}  // namespace mobilellm
