// The thread pool: Split's partition, Run's one call per thread, ForEach's each-item-once, and a
// pool with more threads than CPUs that sleeps instead of spinning.
#include "mobilellm/threadpool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace mobilellm {
namespace {

TEST(ThreadPool, SplitCoversTheRangeInAlignedParts) {
  for (int n : {0, 1, 15, 16, 17, 192, 576, 1000}) {
    for (int parts : {1, 2, 3, 7}) {
      for (int align : {1, 16}) {
        int expect = 0;
        for (int i = 0; i < parts; ++i) {
          int b, e;
          ThreadPool::Split(n, parts, i, align, &b, &e);
          ASSERT_EQ(b, expect) << n << " " << parts << " " << align;
          ASSERT_LE(b, e);
          if (e < n) {
            ASSERT_EQ(e % align, 0);
          }
          expect = e;
        }
        ASSERT_EQ(expect, n);
      }
    }
  }
}

TEST(ThreadPool, RunCallsEveryThreadOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int round = 0; round < 100; ++round) {
      std::vector<std::atomic<int>> calls(threads);
      pool.Run([&](int t) { calls[t].fetch_add(1); });
      for (int t = 0; t < threads; ++t) ASSERT_EQ(calls[t].load(), 1) << threads << " " << t;
    }
  }
}

TEST(ThreadPool, ForEachVisitsEveryItemOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int n : {0, 1, 3, 9, 1000}) {
      std::vector<std::atomic<int>> seen(n);
      std::atomic<int> bad_thread{0};
      pool.ForEach(n, [&](int i, int t) {
        seen[i].fetch_add(1);
        if (t < 0 || t >= threads) bad_thread.fetch_add(1);
      });
      for (int i = 0; i < n; ++i) ASSERT_EQ(seen[i].load(), 1) << threads << " " << n << " " << i;
      ASSERT_EQ(bad_thread.load(), 0);
    }
  }
}

// More threads than CPUs: the pool must not spin (a spinning thread takes the core from the one it
// waits for), and must still run every region on every thread, many short regions in a row as
// the decoder does (with spinning waits this took minutes on two cores, under qemu more).
TEST(ThreadPool, OversubscribedPoolSleepsInsteadOfSpinning) {
  const int cpus = AvailableCpus();
  ASSERT_GE(cpus, 1);
  EXPECT_TRUE(ThreadPool(cpus).spins()) << "as many threads as CPUs spin";
  for (int threads : {cpus + 1, 64}) {
    if (threads <= cpus) continue;
    ThreadPool pool(threads);
    EXPECT_FALSE(pool.spins()) << threads << " threads on " << cpus << " CPUs";
    std::vector<std::atomic<int>> calls(threads);
    const int rounds = 2000;
    for (int round = 0; round < rounds; ++round) pool.Run([&](int t) { calls[t].fetch_add(1); });
    for (int t = 0; t < threads; ++t) ASSERT_EQ(calls[t].load(), rounds) << threads << " " << t;
    std::atomic<int> sum{0};
    pool.ForEach(1000, [&](int i, int) { sum.fetch_add(i); });
    EXPECT_EQ(sum.load(), 999 * 1000 / 2);
  }
}

}  // namespace
}  // namespace mobilellm
