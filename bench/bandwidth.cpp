// Read bandwidth of this machine for a working set of a given size: the decode bound.
//
//   build/bench/bandwidth --mib 250 --threads 1 --reps 7 [--min-ms 200]   -> prints one JSON line
//
// Each thread streams its share of one buffer (sizes a model's weights would have), summing
// 64-byte lines, like a GEMV reads its weights, in three access patterns (see Pattern), over two
// buffers: one on 4 KiB pages and one on 2 MiB pages where the kernel gives them (memory.h: the
// engine holds its weights that way, and here the page size moves the figure ~1.5x). A timed
// measurement repeats whole passes over the buffer for at least --min-ms, so it is sustained over
// a window as long as a decode benchmark's (a single pass over a 76 MiB buffer takes ~3 ms, where
// one hiccup of a shared host moves the figure by tens of percent either way). Reported: per
// repetition the best pattern's GB/s (1e9 B/s) over both page sizes, median and max over
// repetitions after one untimed pass that faults the pages in; and each pattern's median
// (`linear_GBps` on 4 KiB pages, `linear_2m_GBps` on 2 MiB ones, ...).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "mobilellm/memory.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

// Three ways to read the same bytes, because what a core gets from DRAM depends on the access
// pattern the prefetchers see: a plain linear pass; the same with software prefetch 1 KiB ahead;
// two halves read in step (two streams). The bound is the best of them, so no read pattern our
// kernels could use beats it by construction.
enum Pattern { kLinear, kPrefetch, kTwoStreams, kNumPatterns };
const char* const kPatternNames[kNumPatterns] = {"linear", "prefetch", "two_streams"};

#if defined(__AVX2__)
inline __m256i Line(const uint8_t* p) {
  return _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)),
                          _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32)));
}

uint64_t ReadAll(const uint8_t* p, size_t n, Pattern pattern) {
  __m256i a = _mm256_setzero_si256(), b = a;
  n = n / 128 * 128;
  if (pattern == kTwoStreams) {
    const size_t half = n / 2;
    for (size_t i = 0; i + 64 <= half; i += 64) {
      a = _mm256_add_epi64(a, Line(p + i));
      b = _mm256_add_epi64(b, Line(p + half + i));
    }
  } else {
    for (size_t i = 0; i + 128 <= n; i += 128) {
      if (pattern == kPrefetch) {
        _mm_prefetch(reinterpret_cast<const char*>(p + i + 1024), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p + i + 1088), _MM_HINT_T0);
      }
      a = _mm256_add_epi64(a, Line(p + i));
      b = _mm256_add_epi64(b, Line(p + i + 64));
    }
  }
  a = _mm256_add_epi64(a, b);
  return uint64_t(_mm256_extract_epi64(a, 0) + _mm256_extract_epi64(a, 3));
}
#else
uint64_t ReadAll(const uint8_t* p, size_t n, Pattern pattern) {
  uint64_t s = 0, t = 0;
  const size_t half = n / 16 * 8;
  for (size_t i = 0; i + 8 <= (pattern == kTwoStreams ? half : n); i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    s += v;
    if (pattern == kTwoStreams) {
      std::memcpy(&v, p + half + i, 8);
      t += v;
    } else if (pattern == kPrefetch && i % 64 == 0) {
      __builtin_prefetch(p + i + 1024);
    }
  }
  return s + t;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  double mib = 256;
  int threads = 1, reps = 7;
  double min_ms = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--mib")
      mib = std::atof(argv[i + 1]);
    else if (k == "--threads")
      threads = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--reps")
      reps = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--min-ms")
      min_ms = std::max(0.0, std::atof(argv[i + 1]));
    else
      return std::fprintf(stderr,
                          "usage: bandwidth [--mib N] [--threads T] [--reps R] [--min-ms MS]\n"),
             2;
  }
  const size_t n = (size_t(mib * 1048576) + 4095) / 4096 * 4096;
  std::vector<double> gbs[2][kNumPatterns], best;  // [huge][pattern]
  volatile uint64_t sink = 0;
  for (int huge = 0; huge < 2; ++huge) {
    mobilellm::PageBuffer page_buffer(n, huge == 1);
    uint8_t* const buf = page_buffer.data();
    std::memset(buf, 1, n);
    // Every thread makes `passes` passes over its share; returns the seconds until all are done.
    const auto measure = [&](Pattern pattern, int passes) {
      std::vector<std::thread> pool;
      std::vector<uint64_t> sums(threads);
      const auto t0 = std::chrono::steady_clock::now();
      for (int t = 0; t < threads; ++t) {
        const size_t lo = n / threads * t / 64 * 64,
                     hi = t + 1 == threads ? n : n / threads * (t + 1) / 64 * 64;
        pool.emplace_back([&, lo, hi, t] {
          for (int i = 0; i < passes; ++i) sums[t] += ReadAll(buf + lo, hi - lo, pattern);
        });
      }
      for (auto& th : pool) th.join();
      for (uint64_t v : sums) sink = sink + v;
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    // Untimed: warms the buffer and sizes a measurement (passes enough for min_ms).
    const double one = measure(kLinear, 1);
    const int passes = std::max(1, int(min_ms / 1e3 / std::max(one, 1e-6) + 0.5));
    for (int r = 0; r < reps; ++r) {
      double rep_best = 0;
      for (int pattern = 0; pattern < kNumPatterns; ++pattern) {
        const double g = double(n) * passes / measure(Pattern(pattern), passes) / 1e9;
        gbs[huge][pattern].push_back(g);
        rep_best = std::max(rep_best, g);
      }
      if (huge == 0)
        best.push_back(rep_best);
      else
        best[size_t(r)] = std::max(best[size_t(r)], rep_best);
    }
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf(
      "{\"bytes\": %zu, \"threads\": %d, \"reps\": %d, \"median_GBps\": %.2f, \"max_GBps\": %.2f",
      n, threads, reps, median(best), *std::max_element(best.begin(), best.end()));
  for (int huge = 0; huge < 2; ++huge)
    for (int pattern = 0; pattern < kNumPatterns; ++pattern)
      std::printf(", \"%s%s_GBps\": %.2f", kPatternNames[pattern], huge ? "_2m" : "",
                  median(gbs[huge][pattern]));
  std::printf("}\n");
  return 0;
}
