#include "mobilellm/threadpool.h"

#include <sched.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#define MOBILELLM_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define MOBILELLM_PAUSE() __asm__ __volatile__("yield")
#else
#define MOBILELLM_PAUSE() ((void)0)
#endif

namespace mobilellm {

namespace {
constexpr int kSpinIterations = 1 << 16;  // ~100 us of spinning before sleeping
}

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads),
      spin_iterations_(n_threads_ > AvailableCpus() ? 0 : kSpinIterations) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back(&ThreadPool::Worker, this, i);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    epoch_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::RunErased(void (*call)(void*, int), void* ctx) {
  if (n_threads_ == 1) {
    call(ctx, 0);
    return;
  }
  call_ = call, ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    epoch_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  call(ctx, 0);
  if (spin_iterations_ == 0) {  // oversubscribed: sleep until the last worker says it is done
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    return;
  }
  // Spin while the workers finish their share; if one of them is not running (free cores taken
  // by others: a busy phone, an emulator), give the core away instead of burning it.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < spin_iterations_)
      MOBILELLM_PAUSE();
    else
      std::this_thread::yield();
  }
}

void ThreadPool::Worker(int thread) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (epoch_.load(std::memory_order_acquire) == seen && spins < spin_iterations_) {
      MOBILELLM_PAUSE();
      ++spins;
    }
    if (epoch_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return epoch_.load() != seen; });
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    call_(ctx_, thread);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1 && spin_iterations_ == 0) {
      std::lock_guard<std::mutex> lock(mu_);  // so the caller cannot miss it between test and wait
      done_.notify_one();
    }
  }
}

void ThreadPool::Split(int n, int parts, int i, int align, int* begin, int* end) {
  const int chunks = (n + align - 1) / align;
  const int per = chunks / parts, extra = chunks % parts;
  const int c0 = i * per + (i < extra ? i : extra);
  const int c1 = c0 + per + (i < extra ? 1 : 0);
  *begin = std::min(n, c0 * align);
  *end = std::min(n, c1 * align);
}

int PhysicalCores() {
  std::set<std::pair<std::string, std::string>> cores;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core(dir + "core_id"), pkg(dir + "physical_package_id");
    if (!core) break;
    std::string c, p;
    core >> c;
    pkg >> p;
    cores.insert({p, c});
  }
  if (!cores.empty()) return int(cores.size());
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

int AvailableCpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

}  // namespace mobilellm
