// Sampler and Generate: from logits to tokens, and the streaming generation loop.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "mobilellm/mobilellm.h"

namespace mobilellm {

namespace {

// splitmix64: tiny, fast, identical on every platform (std distributions are not).
uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Length of the longest prefix of s that does not end inside a UTF-8 sequence.
size_t CompleteUtf8Prefix(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

}  // namespace

const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kEos:
      return "eos";
    case StopReason::kMaxTokens:
      return "max_tokens";
    case StopReason::kStopString:
      return "stop_string";
    case StopReason::kContextFull:
      return "context_full";
    case StopReason::kCancelled:
      return "cancelled";
    case StopReason::kCallback:
      return "callback";
  }
  return "unknown";
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), state_(options.seed) {}

int Sampler::Sample(const float* logits, int vocab_size, const std::vector<int>& history) {
  scratch_.assign(logits, logits + vocab_size);
  if (options_.repeat_penalty != 1.0f && options_.repeat_last_n > 0) {
    // Each distinct recent token is penalised once; `penalised_` marks them without allocating.
    penalised_.resize(size_t(vocab_size), 0);
    const size_t from = history.size() > size_t(options_.repeat_last_n)
                            ? history.size() - options_.repeat_last_n
                            : 0;
    for (size_t i = from; i < history.size(); ++i) {
      const int id = history[i];
      if (id < 0 || id >= vocab_size || penalised_[id]) continue;
      penalised_[id] = 1;
      float& l = scratch_[id];
      l = l > 0 ? l / options_.repeat_penalty : l * options_.repeat_penalty;
    }
    for (size_t i = from; i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < vocab_size) penalised_[history[i]] = 0;
  }
  if (options_.temperature <= 0.0f)
    return int(std::max_element(scratch_.begin(), scratch_.end()) - scratch_.begin());

  candidates_.resize(vocab_size);
  for (int i = 0; i < vocab_size; ++i) candidates_[i] = {scratch_[i] / options_.temperature, i};
  auto by_logit = [](const std::pair<float, int>& a, const std::pair<float, int>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t n = candidates_.size();
  if (options_.top_k > 0 && size_t(options_.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + options_.top_k, candidates_.end(),
                      by_logit);
    n = size_t(options_.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  const float max = candidates_[0].first;
  double sum = 0;
  for (size_t i = 0; i < n; ++i)
    sum += (candidates_[i].first = std::exp(candidates_[i].first - max));
  for (size_t i = 0; i < n; ++i)
    candidates_[i].first = float(candidates_[i].first / sum);  // sorted probabilities
  if (options_.min_p > 0.0f) {
    const float floor = options_.min_p * candidates_[0].first;
    size_t keep = 1;
    while (keep < n && candidates_[keep].first >= floor) ++keep;
    n = keep;
  }
  if (options_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = 0;
    while (keep < n && cum < options_.top_p) cum += candidates_[keep++].first;
    n = std::max<size_t>(keep, 1);
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += candidates_[i].first;
  const double u = double(NextRandom(state_) >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += candidates_[i].first;
    if (u < cum) return candidates_[i].second;
  }
  return candidates_[n - 1].second;
}

Result<GenerateResult> Generate(Session& session, const std::vector<int>& prompt_ids,
                                const GenerateOptions& options, const TokenCallback& on_text) {
  using Clock = std::chrono::steady_clock;
  const Model& model = session.model();
  const int vocab = model.config().vocab_size;
  GenerateResult r;
  r.prompt_ids = prompt_ids;
  if (prompt_ids.empty()) return Status::Error("the prompt is empty: nothing to continue");
  if (session.pos() + int(prompt_ids.size()) > session.n_ctx())
    return Status::Error("the prompt has " + std::to_string(prompt_ids.size()) +
                         " tokens, more than the context of " +
                         std::to_string(session.n_ctx() - session.pos()) +
                         " (raise -c or shorten the prompt)");

  const auto t0 = Clock::now();
  MOBILELLM_RETURN_IF_ERROR(session.Evaluate(prompt_ids));
  const auto t1 = Clock::now();
  r.prefill_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();

  Sampler sampler(options.sampling);
  // Everything that grows per token is reserved for the longest possible reply (the context
  // bounds it), so the decode loop allocates nothing (tests/alloc_test.cpp).
  const size_t most = size_t(std::max(0, std::min(options.max_tokens, session.n_ctx())));
  std::vector<int> history;
  history.reserve(prompt_ids.size() + most + 1);
  history = prompt_ids;
  r.ids.reserve(most);
  size_t hold = 0;  // text that could be the start of a stop string is held back
  for (const std::string& s : options.stop) hold = std::max(hold, s.empty() ? 0 : s.size() - 1);
  std::string bytes;   // everything generated, as bytes
  size_t emitted = 0;  // bytes of `bytes` already passed to on_text
  bytes.reserve(most * 8 + 16);
  r.text.reserve(most * 8 + 16);
  // Passes bytes[emitted, upto) on as text: never a partial UTF-8 sequence (the callers cut at
  // sequence boundaries), invalid bytes as the tokenizer's Decode shows them.
  auto emit = [&](size_t upto, int id) {
    const size_t start = r.text.size();
    model.tokenizer().AppendText(std::string_view(bytes).substr(emitted, upto - emitted), &r.text);
    emitted = upto;
    return on_text ? on_text(std::string_view(r.text).substr(start), id) : true;
  };

  r.stop_reason = StopReason::kMaxTokens;
  while (int(r.ids.size()) < options.max_tokens) {
    if (options.cancel && options.cancel->load()) {
      r.stop_reason = StopReason::kCancelled;
      break;
    }
    const int id = sampler.Sample(session.logits(), vocab, history);
    if (model.config().IsEos(id) ||
        std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end()) {
      r.stop_reason = StopReason::kEos;
      break;
    }
    r.ids.push_back(id);
    history.push_back(id);
    bytes += model.TokenBytes(id);
    const size_t complete = CompleteUtf8Prefix(bytes);
    size_t stop_at = std::string::npos;
    for (const std::string& s : options.stop) {
      if (s.empty()) continue;
      const size_t at = bytes.find(s, emitted > s.size() ? emitted - s.size() : 0);
      if (at != std::string::npos) stop_at = std::min(stop_at, at);
    }
    if (stop_at != std::string::npos) {
      if (stop_at > emitted) emit(stop_at, id);
      r.stop_reason = StopReason::kStopString;
      break;
    }
    const size_t safe = complete > hold ? std::max(emitted, complete - hold) : emitted;
    // Back off a held-back cut that would split a UTF-8 sequence.
    size_t cut = safe;
    while (cut > emitted && (static_cast<unsigned char>(bytes[cut]) & 0xC0) == 0x80) --cut;
    if (!emit(cut, id)) {
      r.stop_reason = StopReason::kCallback;
      break;
    }
    if (int(r.ids.size()) == options.max_tokens) break;
    if (session.pos() >= session.n_ctx()) {
      r.stop_reason = StopReason::kContextFull;
      break;
    }
    MOBILELLM_RETURN_IF_ERROR(session.Evaluate(&id, 1));
    ++r.n_decoded;
  }
  if (r.stop_reason != StopReason::kStopString && r.stop_reason != StopReason::kCallback) {
    // Flush held-back text; a dangling partial UTF-8 sequence becomes U+FFFD as Decode has it.
    if (bytes.size() > emitted) emit(bytes.size(), r.ids.empty() ? -1 : r.ids.back());
  }
  bytes.resize(emitted);
  r.bytes = std::move(bytes);
  r.decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  return r;
}

}  // namespace mobilellm
