// ThreadPool: a fixed set of workers that run one function on every thread, then join.
//
// Built for the decoder's many short parallel regions (hundreds per token): workers spin briefly
// on an epoch counter before sleeping, so a region costs about a microsecond, not a syscall.
// Work is split statically by the caller, so results never depend on timing.
// A pool with more threads than the CPUs this process may run on never spins: a spinning thread
// would take the core from the one it waits for (measured: -t 256 on 2 cores decoded at 0.1
// tok/s). Its workers sleep on a condition variable and the caller sleeps until the last is done.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace mobilellm {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads >= 1; the calling thread is thread 0
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Whether waits spin before sleeping: false when size() > AvailableCpus() at construction.
  bool spins() const { return spin_iterations_ > 0; }
  // Calls fn(thread) for every thread in [0, size()) and returns when all have returned.
  // Not reentrant: fn must not call Run. Allocates nothing: fn is passed by reference, not
  // wrapped in a std::function (whose small-buffer is too small for most lambdas).
  template <class F>
  void Run(F&& fn) {
    RunErased(
        [](void* ctx, int thread) { (*static_cast<std::remove_reference_t<F>*>(ctx))(thread); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Calls fn(i, thread) for every i in [0, n), each i once, on whichever thread is free next (an
  // atomic counter), so a thread slowed by the OS, a noisy neighbour or a little core takes fewer
  // items instead of holding the others at the end. Same rules as Run.
  template <class F>
  void ForEach(int n, F&& fn) {
    std::atomic<int> next{0};
    Run([&](int thread) {
      for (int i = next.fetch_add(1, std::memory_order_relaxed); i < n;
           i = next.fetch_add(1, std::memory_order_relaxed))
        fn(i, thread);
    });
  }

  // [begin, end) of part `i` of `parts` when splitting n items in chunks of `align`.
  static void Split(int n, int parts, int i, int align, int* begin, int* end);

 private:
  void RunErased(void (*call)(void* ctx, int thread), void* ctx);
  void Worker(int thread);
  int n_threads_;
  int spin_iterations_;  // before a wait sleeps; 0 when oversubscribed
  std::vector<std::thread> workers_;
  void (*call_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;  // the last worker of a region signals it when the pool sleeps
};

// Physical cores of this machine (hyper-threads counted once), at least 1.
int PhysicalCores();

// CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), at least 1. More
// threads than this only wait for one another.
int AvailableCpus();

}  // namespace mobilellm
