// Decoder: the forward pass of a MobileLLM-style model over a session's KV cache.
//
// It reads like the PyTorch module in tools/mobilellm_torch.py (Forward, Attention, Ffn in
// decoder.cpp). What it owns: the activations of up to n_batch tokens, allocated once, and the
// scheduler (threads). What it is not: the KV cache and the position are the session's (the
// decoder is handed them), the weights the model's, the arithmetic the kernels' (kernels.h).
#pragma once

#include <initializer_list>
#include <vector>

#include "kv_cache.h"
#include "mobilellm/mobilellm.h"
#include "phase_timer.h"
#include "scheduler.h"
#include "weights.h"

namespace mobilellm {

class Decoder {
 public:
  // For sessions of `model` with options o (every field resolved: n_ctx, n_threads, n_batch > 0).
  // Throws std::bad_alloc when the activations cannot be allocated.
  Decoder(const Model& model, const SessionOptions& o);

  // Runs ids[0..n) (n <= n_batch) at positions pos0..pos0+n-1: caches their keys and values in
  // kv and leaves the logits (every token's with logits_all, else the last one's) in logits().
  // Allocates nothing.
  void Forward(KvCache& kv, const int* ids, int n, int pos0);

  const float* logits() const { return logits_.data(); }  // [n or 1, vocab_size]
  int n_threads() const { return sched_.n_threads(); }
  const DecodeProfile& profile() const { return profile_; }

 private:
  using Block = Model::Weights::Block;
  class Residual;

  void Embed(const int* ids, int n);
  // xb = rmsnorm(x) * weight: the input of a sublayer's matmuls, with its int8 blocks when they
  // read some (int8_inputs_), made while each row is in L1.
  const float* RmsNorm(const Residual& x, const Tensor& weight, Phase phase);
  const float* Attention(const Block& blk, int layer, KvCache::LayerView kv, const float* h, int n,
                         int n_out, int pos0);
  const float* Ffn(const Block& blk, const float* h, int n);
  void Logits(const Residual& x);

  // Attention's steps. PositionAndCache runs, per token, what the layer's kind asks for (RoPE
  // and QK-norm, or NoPE temperature tuning), then caches the key and value.
  void PositionAndCache(int layer, KvCache::LayerView kv, int n, int pos0);
  void ApplyRope(float* q, float* k, int pos) const;  // one token's q and k heads
  void QkNorm(float* q, float* k) const;              // weightless RMS norm of every head
  void ScaleNoPeQueries(float* q, int pos) const;     // q *= c.TemperatureScale(pos)
  void Attend(int layer, KvCache::LayerView kv, int first, int n, int pos0);

  // One matmul region (Scheduler::Matmuls) timed as `phase`; returns the first job's output.
  // int8_ready: the input is the RmsNorm output, whose int8 blocks are made.
  float* Matmuls(Phase phase, int n, std::initializer_list<MatmulJob> jobs, bool int8_ready,
                 bool silu_gate = false);

  const ModelConfig& c_;
  const Model::Weights& w_;
  const KernelTable& k_;
  SessionOptions opt_;
  Scheduler sched_;
  bool int8_inputs_;  // some matmul weight of a block is quantized

  std::vector<float> rope_cos_, rope_sin_;  // [n_ctx, head_dim / 2]
  std::vector<float> ones_;                 // [head_dim] 1.0: QK-norm's weight
  // Activations for up to n_batch tokens: allocated once, reused for every call.
  std::vector<float> x_;       // [n_batch, dim] residual stream
  std::vector<float> xb_;      // [n_batch, dim] normed input of a sublayer
  std::vector<float> xb2_;     // [n_batch, dim] sublayer output
  std::vector<float> q_;       // [n_batch, q_dim]
  std::vector<float> kb_;      // [n_batch, kv_dim] new keys, before the cache
  std::vector<float> vb_;      // [n_batch, kv_dim] new values, before the cache
  std::vector<float> att_;     // [n_batch, q_dim] attention output
  std::vector<float> hb_;      // [n_batch, ffn_dim] gate, then silu(gate) * up
  std::vector<float> hb2_;     // [n_batch, ffn_dim] up
  std::vector<float> scores_;  // [n_threads, n_heads / n_kv_heads, n_ctx]
  std::vector<int8_t> xq_;     // [n_batch, max(dim, q_dim, ffn_dim)] int8 blocks of a matmul input
  std::vector<float> xd_;      // [n_batch, max(dim, q_dim, ffn_dim) / 32] their scales
  std::vector<float> logits_;  // [n_batch or 1, vocab_size]
  Int8Rows int8_;              // xq_, xd_

  DecodeProfile profile_;            // phases when opt_.profile, else empty
  DecodeProfile* timing_ = nullptr;  // &profile_ during a profiled (one-token) pass
};

}  // namespace mobilellm
