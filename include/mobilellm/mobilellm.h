// mobilellm: the public C++ API. The `mobilellm` CLI uses nothing else.
//
//   auto model = mobilellm::Model::Load("model.mlm");            // Result<shared_ptr<Model>>
//   auto session = mobilellm::Session::Create(*model, {});       // its own KV cache
//   mobilellm::GenerateOptions opt;  opt.max_tokens = 64;
//   auto out = mobilellm::Generate(**session, (*model)->Tokenize("Once upon a time"), opt,
//                                  [](std::string_view text, int) { fputs(...); return true; });
//
// Errors come back as Status/Result values; nothing here throws or aborts on bad input.
// A Model is immutable and may be shared by many Sessions on many threads; a Session is used
// by one thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/chat_template.h"
#include "mobilellm/config.h"
#include "mobilellm/kernels.h"
#include "mobilellm/model_file.h"
#include "mobilellm/status.h"
#include "mobilellm/tokenizer.h"

namespace mobilellm {

struct LoadOptions {
  bool preload = false;  // fault in and mlock all weights at load (latency-critical apps)
};

class Model {
 public:
  // Maps the .mlm file read-only; tensors are read from the mapping, never copied.
  //
  // Contract: the file must not be modified (truncated, rewritten in place) while the Model is
  // alive. Replacing it by renaming another file over its name is safe: the mapping keeps the old
  // inode (mobilellm-convert always writes a temporary file and renames it, so it never modifies a
  // mapped model). If the file does shrink, touching a page past its new end raises SIGBUS, which
  // no library can turn into a Status: an app that cannot rule this out should install a SIGBUS
  // handler, as the mobilellm CLI does (one error line naming the file, exit 1).
  static Result<std::shared_ptr<const Model>> Load(const std::string& path,
                                                   const LoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const;
  const ModelFile& file() const;
  const KernelTable& kernels() const;  // the table every Session of this model uses

  // Text -> ids with the model's tokenizer; BOS (config().bos_id) first when add_bos (for a
  // byte-level BPE model as Llama-3's post-processor adds <|begin_of_text|>).
  std::vector<int> Tokenize(std::string_view text, bool add_bos = true) const;
  // ids -> text exactly as the tokenizer's reference decodes it (Tokenizer::Decode).
  std::string Detokenize(const std::vector<int>& ids) const;
  // The bytes token `id` adds when streamed after other text (Tokenizer::PieceBytes), possibly
  // part of a UTF-8 sequence.
  std::string TokenBytes(int id) const;
  int tokenizer_size() const;
  const Tokenizer& tokenizer() const;

  // The conversation rendered with the file's chat template, as transformers'
  // apply_chat_template renders it (chat_template.h), ready for Tokenize(text, false): the
  // template writes any BOS itself. Errors, one line: the file has no template ("...: this model
  // has no chat template; use `mobilellm generate` ... or `mobilellm-convert --chat-template`"),
  // its template did not parse, or the template failed on these messages (raise_exception).
  Result<std::string> ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const;
  const ChatTemplate* chat_template() const;     // nullptr when ApplyChatTemplate cannot render
  const ChatSpecialTokens& chat_tokens() const;  // bos_token / eos_token as the template sees them

  struct Weights;
  const Weights& weights() const;

 private:
  Model();
  struct Impl;
  static void LoadChatTemplate(const std::string& path, const ModelFile& f, Impl& m);
  std::unique_ptr<Impl> impl_;
};

struct SessionOptions {
  int n_ctx = 0;            // KV-cache length in tokens; 0 = the model's trained context
  int n_threads = 0;        // 0 = physical cores (at most AvailableCpus())
  int n_batch = 256;        // prompt tokens evaluated per forward pass
  bool logits_all = false;  // keep logits for every token of an Evaluate call (perplexity)
  // KV-cache element type: f16 (half the memory and attention traffic; logits within ~1e-3 of
  // f32) or f32 (what the PyTorch reference computes, bit for bit in the parity tests).
  DType kv_type = DType::kF16;
  // Time every phase of one-token forward passes (decode) into Session::profile(); costs two
  // clock reads per phase, ~0.5% of a 125M step.
  bool profile = false;
};

// Where the time of one-token forward passes went (SessionOptions::profile), summed over every
// such pass since the session was created: each phase's wall time and the weight bytes its
// matmuls read in one pass, so that seconds / passes and weight_bytes * passes / seconds are a
// phase's time per token and its read bandwidth.
struct DecodeProfile {
  struct Phase {
    const char* name;
    double seconds = 0;
    uint64_t weight_bytes = 0;  // per pass
    uint64_t cache_bytes = 0;   // attention: KV-cache bytes read, summed over the passes
  };
  // In the order a pass runs them: attn_norm (RMSNorm and its int8 blocks), qkv, rope_kv (RoPE
  // and the cache write), attention, attn_out, ffn_norm, gate_up (with SiLU-gate), down, head
  // (final norm and logits). Only the embedding row and the residual adds, a few microseconds a
  // pass, fall between them.
  std::vector<Phase> phases;
  int64_t passes = 0;
};

class Session {
 public:
  static Result<std::unique_ptr<Session>> Create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& options = {});
  ~Session();

  // Runs ids[0..n) at positions pos()..pos()+n-1, appending to the KV cache. Fails, changing
  // nothing, if a token id is outside the vocabulary or the context would overflow.
  Status Evaluate(const int* ids, int n);
  Status Evaluate(const std::vector<int>& ids) { return Evaluate(ids.data(), int(ids.size())); }

  // [vocab_size] after the last evaluated token; nullptr when no token was evaluated since
  // Create, a Truncate that removed tokens, Reset or Load (the cache then holds no logits).
  const float* logits() const;
  // [vocab_size] after token i of the last Evaluate call (chunk); needs logits_all, else nullptr,
  // as it is for i outside that call and after Truncate, Reset or Load.
  const float* logits_at(int i) const;
  int pos() const;  // tokens in the KV cache
  int n_ctx() const;
  int n_threads() const;
  void Reset();  // empties the KV cache
  // The ids in the KV cache, tokens()[i] at position i (tokens().size() == pos()).
  const std::vector<int>& tokens() const;
  // Rewinds to the first n tokens (n >= pos() changes nothing): evaluating from there gives
  // bit-identical logits to a fresh session fed the same ids. logits() is nullptr until then.
  void Truncate(int n);

  // Writes the KV cache and the token history to `path` atomically (a temporary file renamed over
  // it). The file names the model by a checksum of its config and tensor table (which holds every
  // tensor's CRC-32) and the KV type. Logits are not saved: after Load, logits() is nullptr
  // until a token is evaluated (a chat re-evaluates the last id it reuses).
  Status Save(const std::string& path) const;
  // Replaces this session's state by a saved one. Refuses, changing nothing, a file saved for
  // another model or KV type, one with more tokens than this context, or a corrupt or truncated
  // file: one line naming the file and the reason.
  Status Load(const std::string& path);
  const Model& model() const;
  const DecodeProfile& profile() const;  // empty unless SessionOptions::profile

 private:
  Session();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct SamplerOptions {
  float temperature = 0.8f;     // 0 = greedy (argmax)
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off
  float min_p = 0.05f;          // 0 = off; drops tokens with p < min_p * p_max
  float repeat_penalty = 1.0f;  // 1 = off; CTRL-style, over the last repeat_last_n tokens
  int repeat_last_n = 64;
  uint64_t seed = 0;
};

// Picks the next token from logits. Deterministic for a seed, on every platform.
class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  int Sample(const float* logits, int vocab_size, const std::vector<int>& history);

 private:
  SamplerOptions options_;
  uint64_t state_;
  std::vector<std::pair<float, int>> candidates_;
  std::vector<float> scratch_;
  std::vector<uint8_t> penalised_;
};

enum class StopReason { kEos, kMaxTokens, kStopString, kContextFull, kCancelled, kCallback };
const char* StopReasonName(StopReason r);

struct GenerateOptions {
  int max_tokens = 128;
  SamplerOptions sampling;
  std::vector<std::string> stop;              // stop when the output contains one (not printed)
  std::vector<int> stop_ids;                  // end the output as an EOS id does (not included)
  const std::atomic<bool>* cancel = nullptr;  // checked before every token
};

struct GenerateResult {
  std::vector<int> prompt_ids;
  std::vector<int> ids;  // generated, EOS excluded
  std::string text;      // exactly what was streamed: valid UTF-8, as the tokenizer decodes ids
  std::string bytes;     // the bytes of `ids` that `text` shows (invalid UTF-8 kept as it came)
  StopReason stop_reason = StopReason::kMaxTokens;
  double prefill_ms = 0, decode_ms = 0;
  int n_decoded = 0;  // forward passes after the prompt
};

// Streams valid UTF-8 text as it is produced: on_text(text, id) may be called with empty text
// (an incomplete UTF-8 sequence, or text held back because it may start a stop string); return
// false to stop. The prompt is evaluated from the session's current position.
using TokenCallback = std::function<bool(std::string_view text, int id)>;
Result<GenerateResult> Generate(Session& session, const std::vector<int>& prompt_ids,
                                const GenerateOptions& options, const TokenCallback& on_text);

}  // namespace mobilellm
