// Google Benchmark entries for every matmul and attention variant and every elementwise op of
// every kernel table, from the same registry the engine and the tests use, at the real
// MobileLLM-125M and 350M shapes: matmul/<table>/<variant>/<shape>[.panels]/tokens:<n>,
// attend/<table>/<variant>/keys:<n>, <op>/<table>/n:<n>. A variant is timed once, in the first
// table the CPU supports that lists it (the x86 tables share the AVX2 bodies).
//
//   build/bench/kernels_bench --benchmark_filter='matmul/.*/q8_0' --benchmark_min_time=0.5
//
// Decode-shaped matmuls (1 token) rotate through copies of the matrix totalling > 256 MiB, so
// the weights come from DRAM as they do in a real decode step; counters: weight GB/s and GFLOP/s.
// Prefill-shaped ones (128 tokens) reuse one matrix: they measure arithmetic. Tables the CPU
// cannot run are skipped with the missing feature named.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mobilellm/kernels.h"
#include "mobilellm/memory.h"
#include "mobilellm/quantize.h"
#include "mobilellm/tensor.h"

namespace mobilellm {
#if defined(MOBILELLM_TEST_TWINS)
extern const KernelTable kAvxVnniEvexTwin;  // tests/avxvnni_evex.cpp
#endif
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint8_t> Encode(const std::vector<float>& f, int rows, int cols, DType dt,
                            format::Layout layout) {
  const uint64_t shape[2] = {uint64_t(rows), uint64_t(cols)};
  std::vector<uint8_t> out(format::TensorBytes(uint32_t(dt), 2, shape));
  if (format::IsQuantized(uint32_t(dt))) {
    QuantizeMatrix(f.data(), rows, cols, dt, out.data(), layout);
  } else {
    for (size_t i = 0; i < f.size(); ++i) {
      if (dt == DType::kF32) {
        std::memcpy(&out[4 * i], &f[i], 4);
      } else {
        const uint16_t h = dt == DType::kF16 ? F32ToF16(f[i]) : F32ToBF16(f[i]);
        std::memcpy(&out[2 * i], &h, 2);
      }
    }
  }
  return out;
}

bool Supported(benchmark::State& state, const KernelTable& k) {
  if (k.supported(CpuFeatures::Get())) return true;
  state.SkipWithError((std::string("needs ") + k.features).c_str());
  return false;
}

void BM_Matmul(benchmark::State& state, const KernelTable* k, const MatmulKernel* m,
               format::Layout layout, int rows, int cols, int n_tokens) {
  if (!Supported(state, *k)) return;
  const DType dt = m->weights;
  const auto wf = Random(size_t(rows) * cols, 1);
  const std::vector<uint8_t> one = Encode(wf, rows, cols, dt, layout);
  // Enough copies to defeat the caches for decode shapes; one for prefill (compute-bound).
  // MOBILELLM_BENCH_ARENA_MIB shrinks the arena for smoke runs (CI), where timing means nothing.
  const char* arena_env = std::getenv("MOBILELLM_BENCH_ARENA_MIB");
  const size_t arena_bytes = size_t(arena_env ? std::atoi(arena_env) : 256) << 20;
  const size_t copies = n_tokens == 1 ? std::max<size_t>(1, arena_bytes / one.size()) : 1;
  // Held as the engine holds weights (memory.h): on 2 MiB pages where the kernel gives them.
  PageBuffer arena(one.size() * copies);
  for (size_t c = 0; c < copies; ++c)
    std::memcpy(arena.data() + c * one.size(), one.data(), one.size());
  const auto x = Random(size_t(n_tokens) * cols, 2);
  std::vector<int8_t> xq(x.size());
  std::vector<float> xd(x.size() / 32 + 1), y(size_t(n_tokens) * rows);
  if (cols % 32 == 0)
    for (int t = 0; t < n_tokens; ++t)
      k->quantize_q8(&x[size_t(t) * cols], cols, &xq[size_t(t) * cols], &xd[size_t(t) * cols / 32]);
  const MatmulInput in{x.data(), xq.data(), xd.data(), n_tokens, cols};
  size_t c = 0;
  for (auto _ : state) {
    const WeightView w{arena.data() + c * one.size(), dt, rows, cols, layout};
    m->fn(in, w, 0, rows / m->row_multiple * m->row_multiple, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
    c = (c + 1) % copies;
  }
  state.counters["GB/s"] = benchmark::Counter(double(one.size()) * state.iterations() / 1e9,
                                              benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * rows * cols * n_tokens * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// The buffers of an elementwise op: n values each (cos/sin: n / 2, int8 blocks: n and n / 32).
struct ElementwiseData {
  std::vector<float> x, w, y, cos, sin, d;
  std::vector<int8_t> q;
  explicit ElementwiseData(int n)
      : x(Random(n, 3)),
        w(Random(n, 4)),
        y(Random(n, 5)),
        cos(n / 2, 0.5f),
        sin(n / 2, 0.5f),
        d(n / 32 + 1),
        q(n) {}
};

// An elementwise op as timed: one call on n values, and the bytes that call reads and writes.
struct ElementwiseOp {
  const char* name;
  void (*call)(const KernelTable& k, ElementwiseData& b, int n);
  double (*bytes)(int n);
};
constexpr ElementwiseOp kElementwiseOps[] = {
    {"rmsnorm",  // x, w in; y out
     [](const KernelTable& k, ElementwiseData& b, int n) {
       k.rmsnorm(b.x.data(), b.w.data(), n, 1e-5f, b.y.data());
     },
     [](int n) { return 12.0 * n; }},
    {"silu_mul",  // gate in place, up in
     [](const KernelTable& k, ElementwiseData& b, int n) { k.silu_mul(b.y.data(), b.w.data(), n); },
     [](int n) { return 12.0 * n; }},
    {"quantize_q8",  // x in; int8 values and a scale per 32 out
     [](const KernelTable& k, ElementwiseData& b, int n) {
       k.quantize_q8(b.x.data(), n, b.q.data(), b.d.data());
     },
     [](int n) { return 5.0 * n + 4.0 * n / 32; }},
    {"rope",  // n / 64 heads of 64 in place; one position's 32 cos and 32 sin
     [](const KernelTable& k, ElementwiseData& b, int n) {
       k.rope(b.y.data(), n / 64, 64, b.cos.data(), b.sin.data(), 0);
     },
     [](int n) { return 8.0 * n + 256; }},
};

void BM_Elementwise(benchmark::State& state, const KernelTable* k, const ElementwiseOp* op, int n) {
  if (!Supported(state, *k)) return;
  ElementwiseData data(n);
  for (auto _ : state) {
    op->call(*k, data, n);
    benchmark::DoNotOptimize(data.y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] =
      benchmark::Counter(op->bytes(n) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// One 125M GQA group (3 query heads of head_dim 64 sharing a KV head) against n_keys cached
// positions of its KV head (key blocks and value rows, as the engine holds them), f32 or f16.
void BM_Attend(benchmark::State& state, const KernelTable* k, const AttendKernel* a, int n_keys) {
  if (!Supported(state, *k)) return;
  const bool f16 = a->kv == DType::kF16;
  const int hd = 64, stride = hd, n_q = 3;  // as the engine's cache: one KV head's rows
  const size_t key_elems = size_t((n_keys + kKeyBlock - 1) / kKeyBlock) * kKeyBlock * hd;
  auto q = Random(size_t(n_q) * hd, 3), keys = Random(key_elems, 4),
       values = Random(size_t(n_keys) * stride, 5);
  std::vector<uint16_t> keys16(keys.size()), values16(values.size());
  for (size_t i = 0; i < keys.size(); ++i) keys16[i] = F32ToF16(keys[i]);
  for (size_t i = 0; i < values.size(); ++i) values16[i] = F32ToF16(values[i]);
  const void* kp = f16 ? static_cast<const void*>(keys16.data()) : keys.data();
  const void* vp = f16 ? static_cast<const void*>(values16.data()) : values.data();
  std::vector<float> scores(size_t(n_q) * n_keys), out(size_t(n_q) * hd);
  for (auto _ : state) {
    a->fn(q.data(), n_q, kp, vp, n_keys, stride, hd, 0.125f, scores.data(), out.data(), nullptr);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(
      2.0 * (f16 ? 2 : 4) * hd * n_keys * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * n_q * hd * n_keys * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}

struct Shape {
  const char* name;
  int rows, cols;
};

// MobileLLM-125M (dim 576, 3 KV heads, FFN 1536, vocab 32000) and 350M (dim 960, FFN 2560).
constexpr Shape kShapes[] = {
    {"125m.attn_q", 576, 576},    {"125m.attn_kv", 192, 576},   {"125m.ffn_up", 1536, 576},
    {"125m.ffn_down", 576, 1536}, {"125m.output", 32000, 576},  {"350m.attn_q", 960, 960},
    {"350m.ffn_up", 2560, 960},   {"350m.ffn_down", 960, 2560},
};

// The variants of table k not timed yet (by name, in `seen`).
void RegisterVariants(const KernelTable* k, std::set<std::string>* seen) {
  for (const MatmulKernel& m : k->matmuls) {
    if (!seen->insert(m.name).second) continue;
    const bool ref = std::string(m.name).ends_with("_ref");
    for (format::Layout layout : {format::Layout::kRows, format::Layout::kPanels}) {
      const bool panels = layout == format::Layout::kPanels;
      if (panels && !format::IsQuantized(uint32_t(m.weights))) continue;
      for (const Shape& s : kShapes) {
        for (int tokens : {1, 128}) {
          if (ref && tokens > 1) continue;  // minutes per call: not informative
          const MatmulInput in{nullptr, nullptr, nullptr, tokens, s.cols};
          if (!m.Serves(in, WeightView{nullptr, m.weights, s.rows, s.cols, layout}, s.rows))
            continue;
          const std::string name = std::string("matmul/") + k->name + "/" + m.name + "/" + s.name +
                                   (panels ? ".panels" : "") + "/tokens:" + std::to_string(tokens);
          benchmark::RegisterBenchmark(name.c_str(), BM_Matmul, k, &m, layout, s.rows, s.cols,
                                       tokens)
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
  for (const AttendKernel& a : k->attends) {
    if (!seen->insert(a.name).second) continue;
    for (int n_keys : {128, 2048}) {
      if (!a.Serves(a.kv, 64, n_keys)) continue;  // the 125M head size
      const std::string name =
          std::string("attend/") + k->name + "/" + a.name + "/keys:" + std::to_string(n_keys);
      benchmark::RegisterBenchmark(name.c_str(), BM_Attend, k, &a, n_keys);
    }
  }
}

void RegisterAll() {
  std::vector<const KernelTable*> tables = AllKernelTables();
#if defined(MOBILELLM_TEST_TWINS)
  tables.push_back(&kAvxVnniEvexTwin);
#endif
  // Variants: those of the tables this CPU runs first, so a body shared by tables is timed where it
  // runs; then the rest, which report what they need.
  std::set<std::string> seen;
  for (const KernelTable* k : tables)
    if (k->supported(CpuFeatures::Get())) RegisterVariants(k, &seen);
  for (const KernelTable* k : tables)
    if (!k->supported(CpuFeatures::Get())) RegisterVariants(k, &seen);
  for (const KernelTable* k : tables) {
    for (const ElementwiseOp& op : kElementwiseOps) {
      for (int n : {576, 1536, 2048}) {
        const std::string name = std::string(op.name) + "/" + k->name + "/n:" + std::to_string(n);
        benchmark::RegisterBenchmark(name.c_str(), BM_Elementwise, k, &op, n);
      }
    }
  }
}

}  // namespace
}  // namespace mobilellm

int main(int argc, char** argv) {
  mobilellm::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
