// Session: a model's state for one conversation, a KV cache and its position, and the calls that
// advance it. The forward pass itself is the decoder's (decoder.cpp).

#include <algorithm>
#include <cstring>
#include <new>
#include <optional>

#include "decoder.h"
#include "kv_cache.h"
#include "mobilellm/mobilellm.h"
#include "session_file.h"

namespace mobilellm {

struct Session::Impl {
  std::shared_ptr<const Model> model;
  SessionOptions opt;
  std::optional<KvCache> kv;  // positions [0, pos) valid
  std::optional<Decoder> decoder;
  int pos = 0;
  std::vector<int>
      tokens;      // ids at positions [0, pos); capacity n_ctx, so appending never allocates
  int last_n = 0;  // tokens in the last Evaluate call
};

Session::Session() : impl_(new Impl) {}
Session::~Session() = default;
const float* Session::logits() const {
  const int vocab = impl_->model->config().vocab_size;
  if (impl_->last_n == 0) return nullptr;  // nothing evaluated since Create, Truncate or Load
  return impl_->opt.logits_all
             ? &impl_->decoder->logits()[size_t(std::max(0, impl_->last_n - 1)) * vocab]
             : impl_->decoder->logits();
}
const float* Session::logits_at(int i) const {
  return impl_->opt.logits_all && i >= 0 && i < impl_->last_n
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
  Truncate(0);
}
const std::vector<int>& Session::tokens() const {
  return impl_->tokens;
}
void Session::Truncate(int n) {
  Impl& m = *impl_;
  if (n < 0) n = 0;
  if (n >= m.pos) return;
  m.pos = n, m.last_n = 0;
  m.tokens.resize(size_t(n));
}

Status Session::Save(const std::string& path) const {
  Impl& m = *impl_;
  session_file::Header h = session_file::MakeHeader(*m.model, *m.kv, uint32_t(m.pos));
  uint32_t crc = Crc32(m.tokens.data(), m.tokens.size() * sizeof(int));
  m.kv->ForEachPrefixRun(m.pos, [&](const uint8_t* data, size_t n) { crc = Crc32(data, n, crc); });
  h.payload_crc = crc;
  return WriteFileAtomic(path, [&](const AppendBytes& append) {
    MOBILELLM_RETURN_IF_ERROR(append(&h, sizeof(h)));
    MOBILELLM_RETURN_IF_ERROR(append(m.tokens.data(), m.tokens.size() * sizeof(int)));
    Status s;
    m.kv->ForEachPrefixRun(m.pos, [&](const uint8_t* data, size_t n) {
      if (s.ok()) s = append(data, n);
    });
    return s;
  });
}

Status Session::Load(const std::string& path) {
  Impl& m = *impl_;
  // The largest file worth reading: a full context, this session's or the model's (a file that
  // does not fit this session is then refused by its token count, not its size).
  const uint64_t n_ctx = uint64_t(std::max(m.opt.n_ctx, m.model->config().n_ctx));
  uint64_t max_bytes = 0, cache_bytes = 0;
  if (!m.kv->PrefixBytes(n_ctx, &cache_bytes) ||
      !CheckedAdd<uint64_t>(cache_bytes, n_ctx * 4 + sizeof(session_file::Header), &max_bytes))
    return Status::Error(path + ": context too large to load a session into");
  std::string bytes;
  MOBILELLM_RETURN_IF_ERROR(ReadFile(path, &bytes, max_bytes));
  uint32_t n = 0;
  const char *ids = nullptr, *cache = nullptr;
  MOBILELLM_RETURN_IF_ERROR(session_file::Parse(bytes, path, *m.model, *m.kv, &n, &ids, &cache));
  m.tokens.resize(n);
  std::memcpy(m.tokens.data(), ids, size_t(n) * sizeof(int));
  m.kv->ForEachPrefixRun(int(n), [&](uint8_t* data, size_t bytes_n) {
    std::memcpy(data, cache, bytes_n);
    cache += bytes_n;
  });
  m.pos = int(n), m.last_n = 0;
  return {};
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
    m.tokens.reserve(size_t(o.n_ctx));
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
    m.tokens.insert(m.tokens.end(), ids + done, ids + done + chunk);
    m.pos += chunk, done += chunk;
    m.last_n = chunk;
  }
  return {};
}

}  // namespace mobilellm
