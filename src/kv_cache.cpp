// KvCache: layout and store (kv_cache.h).
//
// [n_layers, n_kv_heads, positions, head_dim]: each head's positions are contiguous, so attention
// reads one sequential stream per head. In decode the cache comes from DRAM (the weights have
// streamed through since the last step), and rows of interleaved heads were read at a stride.
#include "kv_cache.h"

#include <cstring>

namespace mobilellm {

KvCache::KvCache(const ModelConfig& c, int n_ctx, DType type)
    : n_ctx_(n_ctx),
      n_ctx_blocks_((n_ctx + kKeyBlock - 1) / kKeyBlock),
      n_layers_(c.n_layers()),
      n_kv_heads_(c.n_kv_heads),
      head_dim_(c.head_dim),
      type_(type),
      elem_bytes_(type == DType::kF16 ? 2 : 4) {
  keys_ = std::make_unique<PageBuffer>(size_t(c.n_layers()) * n_ctx_blocks_ * kKeyBlock *
                                       c.kv_dim() * elem_bytes_);
  values_ = std::make_unique<PageBuffer>(size_t(c.n_layers()) * n_ctx * c.kv_dim() * elem_bytes_);
}

bool KvCache::PrefixBytes(uint64_t n, uint64_t* out) const {
  // Per head: ceil(n / kKeyBlock) * kKeyBlock key positions and n value rows.
  uint64_t rounded = 0, positions = 0, per_head = 0, heads = 0;
  return CheckedAdd<uint64_t>(n, kKeyBlock - 1, &rounded) &&
         CheckedAdd<uint64_t>(rounded / kKeyBlock * kKeyBlock, n, &positions) &&
         CheckedMul<uint64_t>(positions, uint64_t(head_dim_) * elem_bytes_, &per_head) &&
         CheckedMul<uint64_t>(uint64_t(n_layers_), uint64_t(n_kv_heads_), &heads) &&
         CheckedMul(per_head, heads, out);
}

uint8_t* KvCache::KeyBlock(int layer, int kv_head, int p) const {
  const size_t head = HeadSlot(layer, kv_head) * n_ctx_blocks_ * kKeyBlock * head_dim_;
  return keys_->data() + (head + KeyIndex(p, 0, head_dim_)) * elem_bytes_;
}

uint8_t* KvCache::ValueAt(int layer, int kv_head, int p) const {
  return values_->data() + (HeadSlot(layer, kv_head) * n_ctx_ + p) * head_dim_ * elem_bytes_;
}

// A value row, and the key's column of its key block.
void KvCache::Store(const KernelTable& k, int layer, int kv_head, int p, const float* key,
                    const float* value) {
  const int hd = head_dim_;
  uint8_t* vdst = ValueAt(layer, kv_head, p);
  uint8_t* kdst = KeyBlock(layer, kv_head, p / kKeyBlock * kKeyBlock);
  const int lane = p % kKeyBlock;
  if (type_ == DType::kF32) {
    std::memcpy(vdst, value, size_t(hd) * 4);
    for (int i = 0; i < hd; ++i) reinterpret_cast<float*>(kdst)[i * kKeyBlock + lane] = key[i];
  } else {
    k.to_f16(value, hd, reinterpret_cast<uint16_t*>(vdst));
    for (int i = 0; i < hd; ++i)  // F32ToF16 rounds as to_f16 does (kernels_test: ToF16IsExact)
      reinterpret_cast<uint16_t*>(kdst)[i * kKeyBlock + lane] = F32ToF16(key[i]);
  }
}

}  // namespace mobilellm
