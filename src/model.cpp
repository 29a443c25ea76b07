// Model (weights bound in place + tokenizer) and Session (KV cache + the forward pass).
//
// The forward pass reads like the PyTorch module in tools/mobilellm_torch.py. The one fact to
// keep in mind: a layer-shared model runs each stored block n_repeat times in a row with the
// same weights (never copied), and every logical layer l = b * n_repeat + r has its own slot in
// the KV cache, because each pass sees different inputs.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <optional>

#include "mobilellm/memory.h"
#include "mobilellm/mobilellm.h"
#include "mobilellm/threadpool.h"

namespace mobilellm {
namespace {
// Decode attention split over runs of keys (Session::Impl::Attention): no run shorter than this,
// where the merge and the extra parallel item would cost more than the run.
constexpr int kMinAttnKeys = 32;
// Slots for the runs' partial outputs: (token, KV head, run) items, a few per thread.
constexpr int MaxAttnParts(int n_threads) {
  return 4 * n_threads;
}
// DecodeProfile's phases, in the order a forward pass runs them.
enum Phase { kAttnNorm, kQkv, kRopeKv, kAttention, kAttnOut, kFfnNorm, kGateUp, kDown, kHead };
constexpr const char* kPhaseNames[] = {"attn_norm", "qkv",     "rope_kv", "attention", "attn_out",
                                       "ffn_norm",  "gate_up", "down",    "head"};
}  // namespace

struct Model::Weights {
  struct Block {
    Tensor attn_norm;  // [dim] f32
    Tensor attn_q;     // [n_heads * head_dim, dim]
    Tensor attn_k;     // [n_kv_heads * head_dim, dim]
    Tensor attn_v;     // [n_kv_heads * head_dim, dim]
    Tensor attn_o;     // [dim, n_heads * head_dim]
    Tensor ffn_norm;   // [dim] f32
    Tensor ffn_gate;   // [ffn_dim, dim]
    Tensor ffn_up;     // [ffn_dim, dim]
    Tensor ffn_down;   // [dim, ffn_dim]
  };
  Tensor token_embd;          // [vocab_size, dim]
  std::vector<Block> blocks;  // [n_blocks]: stored once, run n_repeat times each
  Tensor output_norm;         // [dim] f32
  Tensor output;              // [vocab_size, dim]: token_embd when the head is tied
};

struct Model::Impl {
  std::unique_ptr<ModelFile> file;
  Weights weights;
  std::optional<Tokenizer> tokenizer;
  const KernelTable* kernels = nullptr;
};

Model::Model() : impl_(new Impl) {}
Model::~Model() = default;
const ModelConfig& Model::config() const {
  return impl_->file->config();
}
const ModelFile& Model::file() const {
  return *impl_->file;
}
const KernelTable& Model::kernels() const {
  return *impl_->kernels;
}
const Model::Weights& Model::weights() const {
  return impl_->weights;
}

Result<std::shared_ptr<const Model>> Model::Load(const std::string& path,
                                                 const LoadOptions& options) {
  ModelFile::Options file_options;
  file_options.preload = options.preload;
  auto file = ModelFile::Open(path, file_options);
  if (!file.ok()) return file.status();
  std::shared_ptr<Model> model(new Model());
  Impl& m = *model->impl_;
  m.file = std::move(file).value();
  m.kernels = &SelectKernels();
  if (m.file->config().arch != format::Arch::kMobileLlm)
    return Status::Error(path +
                         ": a llama4_text (MobileLLM-R1) model: this build converts it but does "
                         "not run it yet");

  const ModelFile& f = *m.file;
  auto view = [&](const std::string& name) {
    return f.View(*f.Find(name));
  };  // Open checked presence
  Weights& w = m.weights;
  w.token_embd = view("token_embd");
  w.output_norm = view("output_norm");
  w.output = f.config().tied_head ? w.token_embd : view("output");
  for (int b = 0; b < f.config().n_blocks; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    w.blocks.push_back({view(p + "attn_norm"), view(p + "attn_q"), view(p + "attn_k"),
                        view(p + "attn_v"), view(p + "attn_o"), view(p + "ffn_norm"),
                        view(p + "ffn_gate"), view(p + "ffn_up"), view(p + "ffn_down")});
  }

  const std::string_view spm = f.Bytes(*f.Find(format::kTokenizerTensor));
  auto tokenizer = Tokenizer::Parse(spm);
  if (!tokenizer.ok())
    return Status::Error(path + ": tensor 'tokenizer': " + tokenizer.status().message());
  m.tokenizer = std::move(tokenizer).value();
  if (m.tokenizer->size() > f.config().vocab_size)
    return Status::Error(path + ": tokenizer has " + std::to_string(m.tokenizer->size()) +
                         " pieces, more than the model's vocab_size " +
                         std::to_string(f.config().vocab_size));
  return std::shared_ptr<const Model>(std::move(model));
}

std::vector<int> Model::Tokenize(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  if (add_bos) ids.push_back(config().bos_id);
  const std::vector<int> body = impl_->tokenizer->Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string Model::Detokenize(const std::vector<int>& ids) const {
  return impl_->tokenizer->Decode(ids);
}

int Model::tokenizer_size() const {
  return impl_->tokenizer->size();
}

const Tokenizer& Model::tokenizer() const {
  return *impl_->tokenizer;
}

std::string Model::TokenBytes(int id) const {
  return impl_->tokenizer->PieceBytes(id);
}

// ---------------------------------------------------------------------------------------------

struct Session::Impl {
  std::shared_ptr<const Model> model;
  const KernelTable* k = nullptr;
  SessionOptions opt;
  std::unique_ptr<ThreadPool> pool;
  int pos = 0;
  int last_n = 0;  // tokens in the last Evaluate call

  // KV cache: one slot per logical layer, f16 or f32 (opt.kv_type). Not written up front: only
  // rows < pos are ever read, so creating a session costs nothing. On 2 MiB pages (memory.h):
  // attention streams it from DRAM every step, and did so 15% faster than from 4 KiB pages; the
  // price is that a 2 MiB page becomes resident at its first row, so about the whole cache does.
  // [n_layers, n_kv_heads, n_ctx, head_dim]: each head's positions contiguous, so attention
  // reads one sequential stream per head. In decode the cache comes from DRAM (the weights have
  // streamed through since the last step), and rows of interleaved heads were read at a stride.
  std::unique_ptr<PageBuffer> key_cache;
  std::unique_ptr<PageBuffer> value_cache;
  size_t kv_elem = 2;                     // bytes per cache element
  std::vector<float> rope_cos, rope_sin;  // [n_ctx, head_dim / 2]

  // Activations for up to n_batch tokens: allocated once, reused for every call.
  std::vector<float> x;       // [n_batch, dim] residual stream
  std::vector<float> xb;      // [n_batch, dim] normed input of a sublayer
  std::vector<float> xb2;     // [n_batch, dim] sublayer output
  std::vector<float> q;       // [n_batch, q_dim]
  std::vector<float> att;     // [n_batch, q_dim] attention output
  std::vector<float> hb;      // [n_batch, ffn_dim] gate, then silu(gate) * up
  std::vector<float> hb2;     // [n_batch, ffn_dim] up
  std::vector<float> kb, vb;  // [n_batch, kv_dim] new keys and values, before the cache
  std::vector<float> scores;  // [n_threads, n_heads / n_kv_heads, n_ctx]
  // Decode attention split over runs of keys: each part's output and log-sum-exp, per head.
  std::vector<float> att_parts;  // [MaxAttnParts(n_threads), n_heads / n_kv_heads, head_dim]
  std::vector<float> lse_parts;  // [MaxAttnParts(n_threads), n_heads / n_kv_heads]
  std::vector<int8_t> xq;     // [n_batch, max(dim, q_dim, ffn_dim)] int8 blocks of a matmul input
  std::vector<float> xd;      // [n_batch, max(dim, q_dim, ffn_dim) / 32] their scales
  std::vector<float> logits;  // [n_batch or 1, vocab_size]
  DecodeProfile profile;      // phases (kPhase*) when opt.profile, else empty

  // Each (logical layer, KV head) has n_ctx_blocks() * kKeyBlock positions of keys, in key blocks
  // (kernels.h: KeyIndex), and n_ctx rows of values.
  int n_ctx_blocks() const { return (opt.n_ctx + kKeyBlock - 1) / kKeyBlock; }
  size_t HeadSlot(int layer, int kv_head) const {
    return size_t(layer) * model->config().n_kv_heads + kv_head;
  }
  // The key block holding position p (a multiple of kKeyBlock).
  uint8_t* KeyBlock(int layer, int kv_head, int p) {
    const int hd = model->config().head_dim;
    return key_cache->data() +
           (HeadSlot(layer, kv_head) * n_ctx_blocks() * kKeyBlock * hd + KeyIndex(p, 0, hd)) *
               kv_elem;
  }
  uint8_t* ValueAt(int layer, int kv_head, int p) {
    const int hd = model->config().head_dim;
    return value_cache->data() + (HeadSlot(layer, kv_head) * opt.n_ctx + p) * hd * kv_elem;
  }
  // One head's head_dim floats into the cache, in the cache's type: a value row, and the key's
  // column of its key block.
  void StoreKv(const float* key, const float* value, int layer, int kv_head, int p) {
    const int hd = model->config().head_dim;
    uint8_t* vdst = ValueAt(layer, kv_head, p);
    uint8_t* kdst = KeyBlock(layer, kv_head, p / kKeyBlock * kKeyBlock);
    const int lane = p % kKeyBlock;
    if (opt.kv_type == DType::kF32) {
      std::memcpy(vdst, value, size_t(hd) * 4);
      for (int i = 0; i < hd; ++i) reinterpret_cast<float*>(kdst)[i * kKeyBlock + lane] = key[i];
    } else {
      k->to_f16(value, hd, reinterpret_cast<uint16_t*>(vdst));
      for (int i = 0; i < hd; ++i)  // F32ToF16 rounds as to_f16 does (kernels_test: ToF16IsExact)
        reinterpret_cast<uint16_t*>(kdst)[i * kKeyBlock + lane] = F32ToF16(key[i]);
    }
  }

  // fn(t) for every token t < n: split across the threads when there are several tokens (prefill),
  // inline for one (decode), where a parallel region would cost more than the work.
  template <typename Fn>
  void PerToken(int n, const Fn& fn) {
    if (n == 1 || pool->size() == 1) {
      for (int t = 0; t < n; ++t) fn(t);
      return;
    }
    pool->Run([&](int thread) {
      int t0, t1;
      ThreadPool::Split(n, pool->size(), thread, 1, &t0, &t1);
      for (int t = t0; t < t1; ++t) fn(t);
    });
  }

  struct MatmulJob {
    const float* x;
    const Tensor* w;
    float* y;
    int y_stride;
  };
  // quantized_input: the caller has already written the jobs' input as int8 blocks (xq, xd).
  void Matmuls(int n_tokens, std::initializer_list<MatmulJob> jobs, bool silu_gate = false,
               bool quantized_input = false);
  // Row t of x (cols values) as int8 blocks into xq / xd, the integer kernels' input.
  void QuantizeRow(const float* x, int t, int cols) {
    k->quantize_q8(x, cols, &xq[size_t(t) * cols], &xd[size_t(t) * cols / format::kBlock]);
  }
  // Whether a matmul region reads its input as int8 blocks: any of its weights quantized.
  static bool AnyQuantized(std::initializer_list<MatmulJob> jobs) {
    for (const MatmulJob& j : jobs)
      if (format::IsQuantized(uint32_t(j.w->dtype))) return true;
    return false;
  }
  void Attention(int layer, int n_tokens, int pos0);
  void Forward(const int* ids, int n, int pos0);
};

Session::Session() : impl_(new Impl) {}
Session::~Session() = default;
const float* Session::logits() const {
  const int vocab = impl_->model->config().vocab_size;
  return impl_->opt.logits_all ? &impl_->logits[size_t(std::max(0, impl_->last_n - 1)) * vocab]
                               : impl_->logits.data();
}
const float* Session::logits_at(int i) const {
  return impl_->opt.logits_all ? &impl_->logits[size_t(i) * impl_->model->config().vocab_size]
                               : nullptr;
}
int Session::pos() const {
  return impl_->pos;
}
int Session::n_ctx() const {
  return impl_->opt.n_ctx;
}
int Session::n_threads() const {
  return impl_->pool->size();
}
void Session::Reset() {
  impl_->pos = 0, impl_->last_n = 0;
}
const Model& Session::model() const {
  return *impl_->model;
}
const DecodeProfile& Session::profile() const {
  return impl_->profile;
}

Result<std::unique_ptr<Session>> Session::Create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& options) {
  const ModelConfig& c = model->config();
  SessionOptions o = options;
  if (o.n_ctx <= 0) o.n_ctx = c.n_ctx;
  if (o.n_threads <= 0) o.n_threads = std::min(PhysicalCores(), AvailableCpus());
  if (o.n_batch <= 0) o.n_batch = 256;
  o.n_batch = std::min(o.n_batch, o.n_ctx);
  if (o.n_ctx > (1 << 20))
    return Status::Error("context " + std::to_string(o.n_ctx) + " is too large");
  if (o.n_threads > 256) return Status::Error("at most 256 threads");

  std::unique_ptr<Session> s(new Session());
  Impl& m = *s->impl_;
  m.model = std::move(model);
  m.k = &m.model->kernels();
  m.opt = o;
  if (o.kv_type != DType::kF16 && o.kv_type != DType::kF32)
    return Status::Error("KV cache type must be f16 or f32");
  try {
    m.kv_elem = o.kv_type == DType::kF16 ? 2 : 4;
    const size_t kv = size_t(c.n_layers()) * o.n_ctx * c.kv_dim() * m.kv_elem;
    m.key_cache = std::make_unique<PageBuffer>(size_t(c.n_layers()) * m.n_ctx_blocks() * kKeyBlock *
                                               c.kv_dim() * m.kv_elem);
    m.value_cache = std::make_unique<PageBuffer>(kv);
    const int half = c.head_dim / 2;
    m.rope_cos.resize(size_t(o.n_ctx) * half);
    m.rope_sin.resize(size_t(o.n_ctx) * half);
    for (int p = 0; p < o.n_ctx; ++p) {
      for (int i = 0; i < half; ++i) {
        // As HF computes it, in f32: inv_freq = 1 / theta^(2i / head_dim); angle = pos * inv_freq.
        const float inv_freq = 1.0f / std::pow(c.rope_theta, float(2 * i) / float(c.head_dim));
        const float angle = float(p) * inv_freq;
        m.rope_cos[size_t(p) * half + i] = std::cos(angle);
        m.rope_sin[size_t(p) * half + i] = std::sin(angle);
      }
    }
    const size_t b = size_t(o.n_batch);
    m.x.resize(b * c.dim), m.xb.resize(b * c.dim), m.xb2.resize(b * c.dim);
    m.q.resize(b * c.q_dim()), m.att.resize(b * c.q_dim());
    m.hb.resize(b * c.ffn_dim), m.hb2.resize(b * c.ffn_dim);
    m.kb.resize(b * c.kv_dim()), m.vb.resize(b * c.kv_dim());
    m.scores.resize(size_t(o.n_threads) * (c.n_heads / c.n_kv_heads) * o.n_ctx);
    m.att_parts.resize(size_t(MaxAttnParts(o.n_threads)) * (c.n_heads / c.n_kv_heads) * c.head_dim);
    m.lse_parts.resize(size_t(MaxAttnParts(o.n_threads)) * (c.n_heads / c.n_kv_heads));
    const size_t widest = size_t(std::max({c.dim, c.q_dim(), c.ffn_dim}));
    m.xq.resize(b * widest);
    m.xd.resize(b * widest / format::kBlock + 1);
    m.logits.resize((o.logits_all ? b : 1) * size_t(c.vocab_size));
  } catch (const std::bad_alloc&) {
    return Status::Error("out of memory allocating the KV cache for a context of " +
                         std::to_string(o.n_ctx) + " tokens (try a smaller -c)");
  }
  m.pool = std::make_unique<ThreadPool>(o.n_threads);
  if (o.profile) {
    for (const char* name : kPhaseNames) m.profile.phases.push_back({name});
    const Model::Weights& w = m.model->weights();
    for (const Model::Weights::Block& blk : w.blocks) {
      m.profile.phases[kQkv].weight_bytes +=
          c.n_repeat * (blk.attn_q.nbytes() + blk.attn_k.nbytes() + blk.attn_v.nbytes());
      m.profile.phases[kAttnOut].weight_bytes += c.n_repeat * blk.attn_o.nbytes();
      m.profile.phases[kGateUp].weight_bytes +=
          c.n_repeat * (blk.ffn_gate.nbytes() + blk.ffn_up.nbytes());
      m.profile.phases[kDown].weight_bytes += c.n_repeat * blk.ffn_down.nbytes();
    }
    m.profile.phases[kHead].weight_bytes = w.output.nbytes();
  }
  return s;
}

// Runs several independent matmuls in one parallel region, in units of rows (below). With
// silu_gate, jobs are (gate, up) and each unit finishes its rows with gate = silu(gate) * up, so
// the FFN's hidden layer costs one region, not three.
void Session::Impl::Matmuls(int n_tokens, std::initializer_list<MatmulJob> jobs, bool silu_gate,
                            bool quantized_input) {
  // All jobs of a region read the same input; integer kernels read it as int8 blocks, made once
  // (here, unless the caller made them while the rows were in L1).
  const MatmulJob& first = *jobs.begin();
  const int cols = int(first.w->cols());
  MatmulInput in{first.x, nullptr, nullptr, n_tokens, cols};
  if (AnyQuantized(jobs)) {
    if (!quantized_input)
      PerToken(n_tokens, [&](int t) { QuantizeRow(first.x + size_t(t) * cols, t, cols); });
    in.q = xq.data(), in.d = xd.data();
  }
  // Units of work: chunks of 16-row multiples of each job (with silu_gate, of the (gate, up) pair:
  // the same rows of both, then their product), handed out as threads come free (ForEach).
  // Decode gives each thread one contiguous share of a job, as a static split would: shorter
  // streams lose more to prefetcher ramp-up than dynamic balancing wins back (measured: 8 units a
  // thread decoded 10-20% slower). Prefill is compute-bound: two units a thread even out the load.
  const int n_jobs = silu_gate ? 1 : int(jobs.size());
  const int per_thread = n_tokens == 1 ? 1 : 2;
  int chunk[4], first_unit[5] = {0};
  for (int j = 0; j < n_jobs; ++j) {
    const int rows = int(jobs.begin()[j].w->rows());
    const int units = std::max(1, std::min(per_thread * pool->size(), rows / 16));
    chunk[j] = ((rows + units - 1) / units + 15) / 16 * 16;
    first_unit[j + 1] = first_unit[j] + (rows + chunk[j] - 1) / chunk[j];
  }
  pool->ForEach(first_unit[n_jobs], [&](int unit, int) {
    int j = 0;
    while (unit >= first_unit[j + 1]) ++j;
    const int r0 = (unit - first_unit[j]) * chunk[j];
    const int r1 = std::min(int(jobs.begin()[j].w->rows()), r0 + chunk[j]);
    for (int part = 0; part < (silu_gate ? 2 : 1); ++part) {
      const MatmulJob& job = jobs.begin()[j + part];
      const WeightView w{job.w->data, job.w->dtype, int(job.w->rows()), int(job.w->cols()),
                         job.w->layout};
      k->matmul[WeightTypeIndex(w.dtype)](in, w, r0, r1, job.y, job.y_stride);
    }
    if (silu_gate) {
      const MatmulJob &gate = jobs.begin()[0], &up = jobs.begin()[1];
      for (int t = 0; t < n_tokens; ++t)
        k->silu_mul(gate.y + size_t(t) * gate.y_stride + r0, up.y + size_t(t) * up.y_stride + r0,
                    r1 - r0);
    }
  });
}

// Causal grouped-query attention for n_tokens queries at positions pos0.. against the cache of
// logical layer `layer`. Query head h reads key/value head h / (n_heads / n_kv_heads).
void Session::Impl::Attention(int layer, int n_tokens, int pos0) {
  const ModelConfig& c = model->config();
  const int hd = c.head_dim, group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  const bool f16 = opt.kv_type == DType::kF16;
  // An item is a token's query heads that share a KV head, so the kernel reads each cached row
  // once for all of them. When that leaves too few items to keep every thread busy (decode on
  // several threads: 3 KV heads of 125M on 2 threads), the keys are cut into runs too, each item
  // attends to one run, and MergeAttention joins the runs' outputs: every cached row is still
  // read once, by one thread.
  const int items = n_tokens * c.n_kv_heads;
  int parts = 1;
  if (pool->size() > 1 && items < 3 * pool->size()) {
    parts = std::min((3 * pool->size() + items - 1) / items, (pos0 + 1) / kMinAttnKeys);
    parts = std::max(1, std::min(parts, MaxAttnParts(pool->size()) / items));
  }
  // Token t's query heads of KV head kvh against its keys [p0, p1), into out (and lse).
  const auto attend = [&](int t, int kvh, int p0, int p1, int thread, float* out, float* lse) {
    k->attend[f16](&q[size_t(t) * c.q_dim() + kvh * group * hd], group, KeyBlock(layer, kvh, p0),
                   ValueAt(layer, kvh, p0), p1 - p0, hd, hd, scale,
                   &scores[size_t(thread) * group * opt.n_ctx], out, lse);
  };
  if (parts == 1) {
    pool->ForEach(items, [&](int i, int thread) {
      const int t = i / c.n_kv_heads, kvh = i % c.n_kv_heads;
      attend(t, kvh, 0, pos0 + t + 1, thread, &att[size_t(t) * c.q_dim() + kvh * group * hd],
             nullptr);
    });
    return;
  }
  // Item i = (token, KV head, part): part j of the token's n_keys keys, from the key block at or
  // below n_keys * j / parts to the next part's start, into slot i of att_parts / lse_parts. Each
  // part has at least kMinAttnKeys - kKeyBlock keys.
  const auto part_start = [&](int n_keys, int j) {
    return j == parts ? n_keys : int(int64_t(n_keys) * j / parts) / kKeyBlock * kKeyBlock;
  };
  pool->ForEach(items * parts, [&](int i, int thread) {
    const int t = i / (c.n_kv_heads * parts), kvh = i / parts % c.n_kv_heads, j = i % parts;
    const int n_keys = pos0 + t + 1;
    attend(t, kvh, part_start(n_keys, j), part_start(n_keys, j + 1), thread,
           &att_parts[size_t(i) * group * hd], &lse_parts[size_t(i) * group]);
  });
  for (int i = 0; i < items; ++i) {
    const int t = i / c.n_kv_heads, h0 = i % c.n_kv_heads * group;
    MergeAttention(&att_parts[size_t(i) * parts * group * hd],
                   &lse_parts[size_t(i) * parts * group], parts, group, hd,
                   &att[size_t(t) * c.q_dim() + h0 * hd]);
  }
}

void Session::Impl::Forward(const int* ids, int n, int pos0) {
  const ModelConfig& c = model->config();
  const Model::Weights& w = model->weights();
  const int dim = c.dim, half = c.head_dim / 2;
  const WeightView embd{w.token_embd.data, w.token_embd.dtype, c.vocab_size, dim,
                        w.token_embd.layout};
  // With opt.profile, lap(phase) adds the time since the previous lap to that phase (decode only;
  // the laps are back to back, so the phases add up to the whole pass).
  using Clock = std::chrono::steady_clock;
  const bool timed = !profile.phases.empty() && n == 1;
  Clock::time_point mark = timed ? Clock::now() : Clock::time_point();
  const auto lap = [&](Phase phase) {
    if (!timed) return;
    const Clock::time_point now = Clock::now();
    profile.phases[phase].seconds += std::chrono::duration<double>(now - mark).count();
    mark = now;
  };

  for (int t = 0; t < n; ++t)
    k->row_to_f32[WeightTypeIndex(w.token_embd.dtype)](embd, ids[t], &x[size_t(t) * dim]);

  for (int b = 0; b < c.n_blocks; ++b) {
    const Model::Weights::Block& blk = w.blocks[b];
    for (int r = 0; r < c.n_repeat; ++r) {
      const int layer = b * c.n_repeat + r;  // weights shared across repeats; KV cache is not

      // Attention: x += o(attn(rope(q(norm(x))), rope(k(norm(x))), v(norm(x)))). The per-token
      // steps between matmuls run split across threads in prefill (PerToken), each token's row
      // in one pass while it is in L1: residual add, the next norm and its int8 blocks; RoPE and
      // the cache write.
      const std::initializer_list<MatmulJob> qkv = {
          {xb.data(), &blk.attn_q, q.data(), c.q_dim()},
          {xb.data(), &blk.attn_k, kb.data(), c.kv_dim()},
          {xb.data(), &blk.attn_v, vb.data(), c.kv_dim()}};
      const bool q_attn = AnyQuantized(qkv);
      PerToken(n, [&](int t) {
        if (layer > 0) k->add(&x[size_t(t) * dim], &xb2[size_t(t) * dim], dim);
        k->rmsnorm(&x[size_t(t) * dim], blk.attn_norm.f32(), dim, c.norm_eps, &xb[size_t(t) * dim]);
        if (q_attn) QuantizeRow(&xb[size_t(t) * dim], t, dim);
      });
      lap(kAttnNorm);
      Matmuls(n, qkv, false, q_attn);
      lap(kQkv);
      PerToken(n, [&](int t) {
        const float* cos = &rope_cos[size_t(pos0 + t) * half];
        const float* sin = &rope_sin[size_t(pos0 + t) * half];
        float* kt = &kb[size_t(t) * c.kv_dim()];
        k->rope(&q[size_t(t) * c.q_dim()], c.n_heads, c.head_dim, cos, sin, uint32_t(c.rope_style));
        k->rope(kt, c.n_kv_heads, c.head_dim, cos, sin, uint32_t(c.rope_style));
        for (int h = 0; h < c.n_kv_heads; ++h)
          StoreKv(kt + h * c.head_dim, &vb[size_t(t) * c.kv_dim() + h * c.head_dim], layer, h,
                  pos0 + t);
      });
      lap(kRopeKv);
      Attention(layer, n, pos0);
      if (timed)
        profile.phases[kAttention].cache_bytes += uint64_t(pos0 + 1) * 2 * c.kv_dim() * kv_elem;
      lap(kAttention);
      Matmuls(n, {{att.data(), &blk.attn_o, xb2.data(), dim}});
      lap(kAttnOut);

      // SwiGLU FFN: x += down(silu(gate(norm(x))) * up(norm(x)))
      const std::initializer_list<MatmulJob> gate_up = {
          {xb.data(), &blk.ffn_gate, hb.data(), c.ffn_dim},
          {xb.data(), &blk.ffn_up, hb2.data(), c.ffn_dim}};
      const bool q_ffn = AnyQuantized(gate_up);
      PerToken(n, [&](int t) {
        k->add(&x[size_t(t) * dim], &xb2[size_t(t) * dim], dim);
        k->rmsnorm(&x[size_t(t) * dim], blk.ffn_norm.f32(), dim, c.norm_eps, &xb[size_t(t) * dim]);
        if (q_ffn) QuantizeRow(&xb[size_t(t) * dim], t, dim);
      });
      lap(kFfnNorm);
      Matmuls(n, gate_up, /*silu_gate=*/true, q_ffn);
      lap(kGateUp);
      Matmuls(n, {{hb.data(), &blk.ffn_down, xb2.data(), dim}});
      lap(kDown);
    }
  }
  // The last layer's FFN output, added where the next layer's norm would have added it.
  PerToken(n, [&](int t) { k->add(&x[size_t(t) * dim], &xb2[size_t(t) * dim], dim); });

  // Final norm and logits: every token's with logits_all, else only the last one's.
  const int first = opt.logits_all ? 0 : n - 1;
  for (int t = first; t < n; ++t)
    k->rmsnorm(&x[size_t(t) * dim], w.output_norm.f32(), dim, c.norm_eps,
               &xb[size_t(t - first) * dim]);
  Matmuls(n - first, {{xb.data(), &w.output, logits.data(), c.vocab_size}});
  lap(kHead);
  if (timed) ++profile.passes;
}

Status Session::Evaluate(const int* ids, int n) {
  Impl& m = *impl_;
  const ModelConfig& c = m.model->config();
  if (n <= 0) return Status::Error("Evaluate: no tokens");
  for (int i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      return Status::Error("token id " + std::to_string(ids[i]) +
                           " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  if (m.pos + n > m.opt.n_ctx)
    return Status::Error("context full: " + std::to_string(m.pos) + " + " + std::to_string(n) +
                         " tokens exceed the context of " + std::to_string(m.opt.n_ctx));
  if (m.opt.logits_all && n > m.opt.n_batch)
    return Status::Error("logits_all: at most n_batch (" + std::to_string(m.opt.n_batch) +
                         ") tokens per Evaluate call");
  for (int done = 0; done < n;) {
    const int chunk = std::min(m.opt.n_batch, n - done);
    m.Forward(ids + done, chunk, m.pos);
    m.pos += chunk, done += chunk;
    m.last_n = chunk;
  }
  return {};
}

}  // namespace mobilellm
