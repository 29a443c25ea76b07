// KvCache: a session's cached keys and values, one slot per logical layer.
//
// What it owns: the layout (keys in key blocks, values in rows; kernels.h: KeyIndex), the write of
// a new position (Store) and the views attention reads. Positions [0, pos) are valid; the session
// keeps pos. What it is not: it does not decide what is cached (the decoder does) or when.
// Save/Load copy the runs ForEachPrefixRun names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "mobilellm/untrusted.h"

#include "mobilellm/config.h"
#include "mobilellm/kernels.h"
#include "mobilellm/memory.h"

namespace mobilellm {

class KvCache {
 public:
  // Room for n_ctx positions of every logical layer of c, elements of `type` (f16 or f32). Maps
  // the buffers without writing them: only positions below the session's pos are ever read.
  // Throws std::bad_alloc when they cannot be mapped.
  KvCache(const ModelConfig& c, int n_ctx, DType type);

  // One logical layer's keys and values, as attention reads and the decoder writes them.
  class LayerView {
   public:
    // The key block holding position p (a multiple of kKeyBlock): the `keys` of AttendFn.
    const uint8_t* Keys(int kv_head, int p) const { return cache_->KeyBlock(layer_, kv_head, p); }
    // Value row p and the rows after it: the `values` of AttendFn.
    const uint8_t* Values(int kv_head, int p) const { return cache_->ValueAt(layer_, kv_head, p); }
    // Writes one head's head_dim floats of the key and value at position p, in the cache's type.
    void Store(const KernelTable& k, int kv_head, int p, const float* key, const float* value) {
      cache_->Store(k, layer_, kv_head, p, key, value);
    }

   private:
    friend class KvCache;
    LayerView(KvCache* cache, int layer) : cache_(cache), layer_(layer) {}
    KvCache* cache_;
    int layer_;
  };
  LayerView Layer(int layer) { return LayerView(this, layer); }

  // The bytes holding positions [0, n) of every (layer, KV head), as runs in a fixed order (per
  // head: its key blocks up to the one holding n - 1, then its n value rows): fn(data, bytes) for
  // each. Session::Save writes these runs and Session::Load fills them, so a file's payload is
  // independent of n_ctx. n <= n_ctx().
  template <typename Fn>
  void ForEachPrefixRun(int n, const Fn& fn) {
    const size_t key_bytes =
        size_t(n + kKeyBlock - 1) / kKeyBlock * kKeyBlock * head_dim_ * elem_bytes_;
    const size_t value_bytes = size_t(n) * head_dim_ * elem_bytes_;
    for (int layer = 0; layer < n_layers_; ++layer)
      for (int h = 0; h < n_kv_heads_; ++h) {
        fn(KeyBlock(layer, h, 0), key_bytes);
        fn(ValueAt(layer, h, 0), value_bytes);
      }
  }
  // Bytes ForEachPrefixRun(n) visits, or false if they overflow a uint64_t.
  bool PrefixBytes(uint64_t n, uint64_t* out) const;

  DType type() const { return type_; }
  size_t elem_bytes() const { return elem_bytes_; }
  int n_ctx() const { return n_ctx_; }

 private:
  // Each (logical layer, KV head) has n_ctx_blocks_ * kKeyBlock positions of keys, in key blocks,
  // and n_ctx_ rows of values.
  size_t HeadSlot(int layer, int kv_head) const { return size_t(layer) * n_kv_heads_ + kv_head; }
  uint8_t* KeyBlock(int layer, int kv_head, int p) const;
  uint8_t* ValueAt(int layer, int kv_head, int p) const;
  void Store(const KernelTable& k, int layer, int kv_head, int p, const float* key,
             const float* value);

  int n_ctx_, n_ctx_blocks_, n_layers_, n_kv_heads_, head_dim_;
  DType type_;
  size_t elem_bytes_;  // 2 (f16) or 4 (f32)
  // On 2 MiB pages (memory.h): attention streams the cache from DRAM every step, and did so 15%
  // faster than from 4 KiB pages; the price is that a 2 MiB page becomes resident at its first
  // row, so about the whole cache does.
  std::unique_ptr<PageBuffer> keys_;    // [n_layers, n_kv_heads, n_ctx_blocks, head_dim, kKeyBlock]
  std::unique_ptr<PageBuffer> values_;  // [n_layers, n_kv_heads, n_ctx, head_dim]
};

}  // namespace mobilellm
