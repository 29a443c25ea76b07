// Read bandwidth of this machine for a working set of a given size: the decode bound.
//
//   build/bench/bandwidth --mib 250 --threads 1 --reps 7      -> prints one JSON line
//
// Each thread streams its share of one buffer (sizes a model's weights would have), summing
// 64-byte lines, like a GEMV reads its weights. Reported: median and max GB/s (1e9 B/s) over
// repetitions after one untimed pass that faults the pages in.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

uint64_t ReadAll(const uint8_t* p, size_t n) {
#if defined(__AVX2__)
  __m256i a = _mm256_setzero_si256(), b = a;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    a = _mm256_add_epi64(a, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    b = _mm256_add_epi64(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
  }
  a = _mm256_add_epi64(a, b);
  return uint64_t(_mm256_extract_epi64(a, 0) + _mm256_extract_epi64(a, 3));
#else
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    s += v;
  }
  return s;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  double mib = 256;
  int threads = 1, reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--mib")
      mib = std::atof(argv[i + 1]);
    else if (k == "--threads")
      threads = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--reps")
      reps = std::max(1, std::atoi(argv[i + 1]));
    else
      return std::fprintf(stderr, "usage: bandwidth [--mib N] [--threads T] [--reps R]\n"), 2;
  }
  const size_t n = (size_t(mib * 1048576) + 4095) / 4096 * 4096;
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, n));
  if (!buf) return std::fprintf(stderr, "cannot allocate %zu bytes\n", n), 1;
  std::memset(buf, 1, n);
  std::vector<double> gbs;
  volatile uint64_t sink = 0;
  for (int r = -1; r < reps; ++r) {
    std::vector<std::thread> pool;
    std::vector<uint64_t> sums(threads);
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t) {
      const size_t lo = n / threads * t / 64 * 64,
                   hi = t + 1 == threads ? n : n / threads * (t + 1) / 64 * 64;
      pool.emplace_back([&, lo, hi, t] { sums[t] = ReadAll(buf + lo, hi - lo); });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (uint64_t v : sums) sink = sink + v;
    if (r >= 0) gbs.push_back(n / s / 1e9);
  }
  std::sort(gbs.begin(), gbs.end());
  std::printf(
      "{\"bytes\": %zu, \"threads\": %d, \"reps\": %d, \"median_GBps\": %.2f, \"max_GBps\": "
      "%.2f}\n",
      n, threads, reps, gbs[gbs.size() / 2], gbs.back());
  std::free(buf);
  return 0;
}
