// Decoder: the forward pass (decoder.h).
//
// Forward reads like the PyTorch module in tools/mobilellm_torch.py: x += Attention(norm(x)),
// x += Ffn(norm(x)) for every logical layer, then the final norm and the logits. Each step below
// is one matmul region or one per-token pass (Scheduler), timed as one DecodeProfile phase.
#include "decoder.h"

#include <algorithm>
#include <cmath>

namespace mobilellm {

// The residual stream x [n, dim] of one pass; x += y adds a sublayer's output y [n, dim].
class Decoder::Residual {
 public:
  Residual(Decoder& d, int n) : d_(d), n_(n) {}
  Residual& operator+=(const float* y) {
    const int dim = d_.c_.dim;
    d_.sched_.PerToken(n(), [&](int t) { d_.k_.add(row(t), y + size_t(t) * dim, dim); });
    return *this;
  }
  // From here on, only the last k rows: row(0) is the first of them.
  void KeepLast(int k) { first_ = n_ - k; }
  float* row(int t) const { return &d_.x_[size_t(first_ + t) * d_.c_.dim]; }
  int n() const { return n_ - first_; }

 private:
  Decoder& d_;
  int n_, first_ = 0;
};

void Decoder::Forward(KvCache& kv, const int* ids, int n, int pos0) {
  const ModelConfig& c = c_;
  timing_ = !profile_.phases.empty() && n == 1 ? &profile_ : nullptr;  // decode steps only
  Residual x(*this, n);
  Embed(ids, n);  // x = token_embd[ids]
  // Weights are shared across repeats: stored block b runs n_repeat times in a row with the same
  // tensors, never copied. The KV cache is per logical layer l, since each repeat sees different
  // inputs and so caches different keys and values.
  // The last layer caches every token's key and value, but Logits reads only the last token's
  // output (without logits_all): its attention, o and FFN run for that row alone, which takes
  // nearly 1/n_layers off a prefill. (llama.cpp does the same from the FFN on: inp_out_ids.)
  for (int b = 0; b < c.n_blocks; ++b) {
    const Block& blk = w_.blocks[b];
    for (int r = 0; r < c.n_repeat; ++r) {
      const int l = b * c.n_repeat + r;
      const int n_out = l + 1 == c.n_layers() && !opt_.logits_all ? 1 : n;
      const float* att =
          Attention(blk, l, kv.Layer(l), RmsNorm(x, blk.attn_norm, kAttnNorm), n, n_out, pos0);
      x.KeepLast(n_out);
      x += att;
      x += Ffn(blk, RmsNorm(x, blk.ffn_norm, kFfnNorm), n_out);
    }
  }
  Logits(x);  // logits = output(norm(x))
  if (timing_) ++profile_.passes;
}

// o(attention(rope(q(h)), rope(k(h)), v(h))), causal, grouped-query; this pass's keys and values
// join the cache first. On llama4_text (MobileLLM-R1) the layer's kind decides: RoPE then QK-norm,
// or no position at all (NoPE) with temperature-tuned queries; chunked layers attend within their
// chunk only. All n tokens are cached; the output is the last n_out tokens'.
const float* Decoder::Attention(const Block& blk, int layer, KvCache::LayerView kv, const float* h,
                                int n, int n_out, int pos0) {
  const ModelConfig& c = c_;
  Matmuls(kQkv, n,
          {{h, &blk.attn_q, q_.data(), c.q_dim()},
           {h, &blk.attn_k, kb_.data(), c.kv_dim()},
           {h, &blk.attn_v, vb_.data(), c.kv_dim()}},
          /*int8_ready=*/true);
  PositionAndCache(layer, kv, n, pos0);
  Attend(layer, kv, n - n_out, n, pos0);
  return Matmuls(kAttnOut, n_out, {{att_.data(), &blk.attn_o, xb2_.data(), c.dim}}, false);
}

// SwiGLU: down(silu(gate(h)) * up(h)), the product made in the gate/up region.
const float* Decoder::Ffn(const Block& blk, const float* h, int n) {
  const ModelConfig& c = c_;
  Matmuls(kGateUp, n,
          {{h, &blk.ffn_gate, hb_.data(), c.ffn_dim}, {h, &blk.ffn_up, hb2_.data(), c.ffn_dim}},
          /*int8_ready=*/true, /*silu_gate=*/true);
  return Matmuls(kDown, n, {{hb_.data(), &blk.ffn_down, xb2_.data(), c.dim}}, false);
}

// ---------------------------------------------------------------------------------------------
// The steps.

void Decoder::Embed(const int* ids, int n) {
  const Tensor& e = w_.token_embd;
  const WeightView embd{e.data, e.dtype, c_.vocab_size, c_.dim, e.layout};
  for (int t = 0; t < n; ++t) k_.row_to_f32(embd, ids[t], &x_[size_t(t) * c_.dim]);
}

const float* Decoder::RmsNorm(const Residual& x, const Tensor& weight, Phase phase) {
  const PhaseTimer timer(timing_, phase);
  const int dim = c_.dim;
  sched_.PerToken(x.n(), [&](int t) {
    float* h = &xb_[size_t(t) * dim];
    k_.rmsnorm(x.row(t), weight.f32(), dim, c_.norm_eps, h);
    if (int8_inputs_) int8_.Quantize(k_, h, t, dim);
  });
  return xb_.data();
}

// Per token: q and k positioned as the layer's kind says, then each KV head's key and value into
// the cache. ref: HF Llama4TextAttention.forward (RoPE, then QK-norm; NoPE: temperature tuning).
void Decoder::PositionAndCache(int layer, KvCache::LayerView kv, int n, int pos0) {
  const PhaseTimer timer(timing_, kRopeKv);
  const ModelConfig& c = c_;
  const bool nope = c.NoPe(layer);
  sched_.PerToken(n, [&](int t) {
    const int pos = pos0 + t;
    float* q = &q_[size_t(t) * c.q_dim()];
    float* key = &kb_[size_t(t) * c.kv_dim()];
    const float* value = &vb_[size_t(t) * c.kv_dim()];
    if (!nope) {
      ApplyRope(q, key, pos);
      if (c.qk_norm) QkNorm(q, key);
    } else if (c.attn_temperature_tuning) {
      ScaleNoPeQueries(q, pos);
    }
    for (int h = 0; h < c.n_kv_heads; ++h)
      kv.Store(k_, h, pos, key + h * c.head_dim, value + h * c.head_dim);
  });
}

void Decoder::ApplyRope(float* q, float* k, int pos) const {
  const int half = c_.head_dim / 2;
  const float* cos = &rope_cos_[size_t(pos) * half];
  const float* sin = &rope_sin_[size_t(pos) * half];
  k_.rope(q, c_.n_heads, c_.head_dim, cos, sin, uint32_t(c_.rope_style));
  k_.rope(k, c_.n_kv_heads, c_.head_dim, cos, sin, uint32_t(c_.rope_style));
}

// HF Llama4TextL2Norm: x * rsqrt(mean(x^2) + rms_norm_eps) per head, no weight (ones_).
void Decoder::QkNorm(float* q, float* k) const {
  const int hd = c_.head_dim;
  for (int h = 0; h < c_.n_heads; ++h)
    k_.rmsnorm(q + h * hd, ones_.data(), hd, c_.norm_eps, q + h * hd);
  for (int h = 0; h < c_.n_kv_heads; ++h)
    k_.rmsnorm(k + h * hd, ones_.data(), hd, c_.norm_eps, k + h * hd);
}

void Decoder::ScaleNoPeQueries(float* q, int pos) const {
  const float scale = c_.TemperatureScale(pos);
  for (int i = 0; i < c_.q_dim(); ++i) q[i] *= scale;
}

// att = softmax(q K^T / sqrt(head_dim)) V over the cached positions up to each token's own, from
// the start of its chunk on a chunked layer (c.FirstKey), for tokens [first, n): row t - first of
// att. Query head h reads KV head h / (n_heads / n_kv_heads).
void Decoder::Attend(int layer, KvCache::LayerView kv, int first, int n, int pos0) {
  const PhaseTimer timer(timing_, kAttention);
  const ModelConfig& c = c_;
  const int hd = c.head_dim, group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int p = pos0 + first;  // the first query's position
  const auto first_key = [&](int t) { return c.FirstKey(layer, p + t); };
  sched_.Attention(n - first, c.n_kv_heads, p, first_key, att_.data(),
                   [&](int t, int kvh, int p0, int p1, int thread, float* out, float* lse) {
                     mobilellm::Attend(k_, opt_.kv_type,
                                       &q_[size_t(first + t) * c.q_dim() + kvh * group * hd], group,
                                       kv.Keys(kvh, p0), kv.Values(kvh, p0), p1 - p0, hd, hd, scale,
                                       &scores_[size_t(thread) * group * opt_.n_ctx], out, lse);
                   });
  if (timing_)
    profile_.phases[kAttention].cache_bytes +=
        uint64_t(p + 1 - first_key(0)) * 2 * c.kv_dim() * (opt_.kv_type == DType::kF16 ? 2 : 4);
}

// Final norm and logits: every token's with logits_all, else only the last one's.
void Decoder::Logits(const Residual& x) {
  const PhaseTimer timer(timing_, kHead);
  const int dim = c_.dim, first = opt_.logits_all ? 0 : x.n() - 1;
  for (int t = first; t < x.n(); ++t)
    k_.rmsnorm(x.row(t), w_.output_norm.f32(), dim, c_.norm_eps, &xb_[size_t(t - first) * dim]);
  sched_.Matmuls(x.n() - first, {{xb_.data(), &w_.output, logits_.data(), c_.vocab_size}}, int8_);
}

float* Decoder::Matmuls(Phase phase, int n, std::initializer_list<MatmulJob> jobs, bool int8_ready,
                        bool silu_gate) {
  const PhaseTimer timer(timing_, phase);
  sched_.Matmuls(n, jobs, int8_, int8_ready && int8_inputs_, silu_gate);
  return jobs.begin()->y;
}

// ---------------------------------------------------------------------------------------------

Decoder::Decoder(const Model& model, const SessionOptions& o)
    : c_(model.config()),
      w_(model.weights()),
      k_(model.kernels()),
      opt_(o),
      sched_(model.kernels(), o.n_threads, c_.n_heads / c_.n_kv_heads, c_.head_dim) {
  const ModelConfig& c = c_;
  int8_inputs_ = false;
  for (const Block& blk : w_.blocks)
    for (const Tensor* t : {&blk.attn_q, &blk.attn_k, &blk.attn_v, &blk.ffn_gate, &blk.ffn_up})
      int8_inputs_ |= format::IsQuantized(uint32_t(t->dtype));

  const int half = c.head_dim / 2;
  rope_cos_.resize(size_t(o.n_ctx) * half);
  rope_sin_.resize(size_t(o.n_ctx) * half);
  ones_.assign(size_t(c.head_dim), 1.0f);
  // As HF computes it, in f32: inv_freq (llama3-scaled where configured); angle = pos * inv_freq.
  const std::vector<float> inv_freq = c.RopeInvFreq();
  for (int p = 0; p < o.n_ctx; ++p) {
    for (int i = 0; i < half; ++i) {
      const float angle = float(p) * inv_freq[size_t(i)];
      rope_cos_[size_t(p) * half + i] = std::cos(angle);
      rope_sin_[size_t(p) * half + i] = std::sin(angle);
    }
  }
  const size_t b = size_t(o.n_batch);
  x_.resize(b * c.dim), xb_.resize(b * c.dim), xb2_.resize(b * c.dim);
  q_.resize(b * c.q_dim()), att_.resize(b * c.q_dim());
  kb_.resize(b * c.kv_dim()), vb_.resize(b * c.kv_dim());
  hb_.resize(b * c.ffn_dim), hb2_.resize(b * c.ffn_dim);
  scores_.resize(size_t(o.n_threads) * (c.n_heads / c.n_kv_heads) * o.n_ctx);
  const size_t widest = size_t(std::max({c.dim, c.q_dim(), c.ffn_dim}));
  xq_.resize(b * widest);
  xd_.resize(b * widest / format::kBlock + 1);
  int8_ = {xq_.data(), xd_.data()};
  logits_.resize((o.logits_all ? b : 1) * size_t(c.vocab_size));

  if (o.profile) {  // the weight bytes each phase's matmuls read in one pass
    for (const char* name : kPhaseNames) profile_.phases.push_back({name});
    std::vector<DecodeProfile::Phase>& ph = profile_.phases;
    for (const Block& blk : w_.blocks) {
      ph[kQkv].weight_bytes +=
          c.n_repeat * (blk.attn_q.nbytes() + blk.attn_k.nbytes() + blk.attn_v.nbytes());
      ph[kAttnOut].weight_bytes += c.n_repeat * blk.attn_o.nbytes();
      ph[kGateUp].weight_bytes += c.n_repeat * (blk.ffn_gate.nbytes() + blk.ffn_up.nbytes());
      ph[kDown].weight_bytes += c.n_repeat * blk.ffn_down.nbytes();
    }
    ph[kHead].weight_bytes = w_.output.nbytes();
  }
}

}  // namespace mobilellm
