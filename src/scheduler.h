// Scheduler: how a forward pass's work is spread over the session's threads.
//
// What it owns: the thread pool, the per-token loops between matmuls, the matmul regions (rows of
// several matmuls handed out as threads come free) and the split of decode attention over runs
// of keys. What it is not: it computes nothing itself beyond what it is handed; the decoder says
// what runs, the kernels (kernels.h) how. Work is split by counts, never by timing, so results do
// not depend on which thread ran what.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "mobilellm/kernels.h"
#include "mobilellm/tensor.h"
#include "mobilellm/threadpool.h"

namespace mobilellm {

// Rows of a matmul input as int8 blocks (quantize_q8), the integer kernels' input:
// q [n_tokens, cols], d [n_tokens, cols / 32].
struct Int8Rows {
  int8_t* q;
  float* d;
  // Row t of x (cols values) into row t of these blocks.
  void Quantize(const KernelTable& k, const float* x, int t, int cols) const {
    k.quantize_q8(x, cols, &q[size_t(t) * cols], &d[size_t(t) * cols / format::kBlock]);
  }
};

// One matmul of a region: y[t * y_stride + r] = sum_k x[t, k] * w[r, k].
struct MatmulJob {
  const float* x;
  const Tensor* w;
  float* y;
  int y_stride;
};

// Whether a matmul region reads its input as int8 blocks: any of its weights quantized.
bool AnyQuantized(std::initializer_list<MatmulJob> jobs);

class Scheduler {
 public:
  // n_threads >= 1. group and head_dim size the split attention's slots (Attention below).
  Scheduler(const KernelTable& k, int n_threads, int group, int head_dim);

  int n_threads() const { return pool_.size(); }

  // fn(t) for every token t < n: split across the threads when there are several tokens
  // (prefill), inline for one (decode), where a parallel region would cost more than the work.
  template <typename Fn>
  void PerToken(int n, const Fn& fn) {
    if (n == 1 || pool_.size() == 1) {
      for (int t = 0; t < n; ++t) fn(t);
      return;
    }
    pool_.Run([&](int thread) {
      int t0, t1;
      ThreadPool::Split(n, pool_.size(), thread, 1, &t0, &t1);
      for (int t = t0; t < t1; ++t) fn(t);
    });
  }

  // Runs up to 4 independent matmuls over n_tokens rows of input in one parallel region. All jobs
  // read the same input x; when any weight is quantized they read it as int8 blocks in `int8`,
  // made here unless the caller already made them (int8_ready). With silu_gate the jobs are
  // (gate, up), and each unit of rows ends with gate = silu(gate) * up: the FFN's hidden layer
  // in one region, not three.
  void Matmuls(int n_tokens, std::initializer_list<MatmulJob> jobs, const Int8Rows& int8,
               bool int8_ready = false, bool silu_gate = false);

  // Causal attention split into items: an item is one token's query heads that share a KV head,
  // so a kernel call reads each cached row once for all of them. Runs
  //   attend(t, kv_head, p0, p1, thread, out, lse)
  // for token t < n_tokens (at position pos0 + t, so over keys [0, pos0 + t + 1)) and
  // kv_head < n_kv_heads: the item's group of query heads against keys [p0, p1), into out
  // (group * head_dim floats) and, when not null, lse (group floats). The output of (t, kv_head)
  // lands in att [n_tokens, n_kv_heads, group, head_dim].
  //
  // When items are too few to keep every thread busy (decode on several threads: 3 KV heads of
  // 125M on 2 threads), each item's keys are cut into runs too (split-K, as in flash-decoding):
  // every run is an item, and MergeAttention joins the runs' outputs. Every cached row is still
  // read once, by one thread. Runs start on key blocks and have at least kMinAttnKeys -
  // kKeyBlock keys.
  // Token t attends to positions [first_key(t), pos0 + t]: first_key(t) is 0, or the start of
  // its attention chunk (a multiple of kKeyBlock).
  template <typename FirstKey, typename Attend>
  void Attention(int n_tokens, int n_kv_heads, int pos0, const FirstKey& first_key, float* att,
                 const Attend& attend);

 private:
  // No run of keys shorter than this: the merge and the extra item would cost more than the run.
  static constexpr int kMinAttnKeys = 32;
  // Slots for the runs' partial outputs: (token, KV head, run) items, a few per thread.
  static int MaxAttnParts(int n_threads) { return 4 * n_threads; }

  const KernelTable& k_;
  ThreadPool pool_;
  int group_, head_dim_;
  std::vector<float> att_parts_;  // [MaxAttnParts(n_threads), group, head_dim]
  std::vector<float> lse_parts_;  // [MaxAttnParts(n_threads), group]
};

template <typename FirstKey, typename Attend>
void Scheduler::Attention(int n_tokens, int n_kv_heads, int pos0, const FirstKey& first_key,
                          float* att, const Attend& attend) {
  const int group = group_, hd = head_dim_, n_threads = pool_.size();
  const int items = n_tokens * n_kv_heads;
  int parts = 1;
  if (n_threads > 1 && items < 3 * n_threads) {
    int fewest_keys = pos0 + 1;  // of any token: each run must get at least kMinAttnKeys
    for (int t = 0; t < n_tokens; ++t)
      fewest_keys = std::min(fewest_keys, pos0 + t + 1 - first_key(t));
    parts = std::min((3 * n_threads + items - 1) / items, fewest_keys / kMinAttnKeys);
    parts = std::max(1, std::min(parts, MaxAttnParts(n_threads) / items));
  }
  if (parts == 1) {
    pool_.ForEach(items, [&](int i, int thread) {
      const int t = i / n_kv_heads, kvh = i % n_kv_heads;
      attend(t, kvh, first_key(t), pos0 + t + 1, thread, &att[size_t(i) * group * hd], nullptr);
    });
    return;
  }
  // Item i = (token, KV head, part): part j of the token's n_keys keys from k0, from the key block
  // at or below k0 + n_keys * j / parts to the next part's start, into slot i of att_parts_ /
  // lse_parts_.
  const auto part_start = [&](int k0, int n_keys, int j) {
    return k0 + (j == parts ? n_keys : int(int64_t(n_keys) * j / parts) / kKeyBlock * kKeyBlock);
  };
  pool_.ForEach(items * parts, [&](int i, int thread) {
    const int t = i / (n_kv_heads * parts), kvh = i / parts % n_kv_heads, j = i % parts;
    const int k0 = first_key(t), n_keys = pos0 + t + 1 - k0;
    attend(t, kvh, part_start(k0, n_keys, j), part_start(k0, n_keys, j + 1), thread,
           &att_parts_[size_t(i) * group * hd], &lse_parts_[size_t(i) * group]);
  });
  for (int i = 0; i < items; ++i)
    MergeAttention(&att_parts_[size_t(i) * parts * group * hd],
                   &lse_parts_[size_t(i) * parts * group], parts, group, hd,
                   &att[size_t(i) * group * hd]);
}

}  // namespace mobilellm
