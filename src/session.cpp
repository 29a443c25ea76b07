// Session: a model's state for one conversation, a KV cache and its position, and the calls that
// advance it. The forward pass itself is the decoder's (decoder.cpp).

#include <algorithm>
#include <new>
#include <optional>

#include "decoder.h"
#include "kv_cache.h"
#include "mobilellm/mobilellm.h"

namespace mobilellm {

struct Session::Impl {
  std::shared_ptr<const Model> model;
  SessionOptions opt;
  std::optional<KvCache> kv;  // positions [0, pos) valid
  std::optional<Decoder> decoder;
  int pos = 0;
  int last_n = 0;  // tokens in the last Evaluate call
};

Session::Session() : impl_(new Impl) {}
Session::~Session() = default;
const float* Session::logits() const {
  const int vocab = impl_->model->config().vocab_size;
  return impl_->opt.logits_all
             ? &impl_->decoder->logits()[size_t(std::max(0, impl_->last_n - 1)) * vocab]
             : impl_->decoder->logits();
}
const float* Session::logits_at(int i) const {
  return impl_->opt.logits_all
             ? &impl_->decoder->logits()[size_t(i) * impl_->model->config().vocab_size]
             : nullptr;
}
int Session::pos() const {
  return impl_->pos;
}
int Session::n_ctx() const {
  return impl_->opt.n_ctx;
}
int Session::n_threads() const {
  return impl_->decoder->n_threads();
}
void Session::Reset() {
  impl_->pos = 0, impl_->last_n = 0;
}
const Model& Session::model() const {
  return *impl_->model;
}
const DecodeProfile& Session::profile() const {
  return impl_->decoder->profile();
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
  if (o.kv_type != DType::kF16 && o.kv_type != DType::kF32)
    return Status::Error("KV cache type must be f16 or f32");

  std::unique_ptr<Session> s(new Session());
  Impl& m = *s->impl_;
  m.model = std::move(model);
  m.opt = o;
  try {
    m.kv.emplace(c, o.n_ctx, o.kv_type);
    m.decoder.emplace(*m.model, o);
  } catch (const std::bad_alloc&) {
    return Status::Error("out of memory allocating the KV cache for a context of " +
                         std::to_string(o.n_ctx) + " tokens (try a smaller -c)");
  }
  return s;
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
    m.decoder->Forward(*m.kv, ids + done, chunk, m.pos);
    m.pos += chunk, done += chunk;
    m.last_n = chunk;
  }
  return {};
}

}  // namespace mobilellm
