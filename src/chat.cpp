// Chat: a conversation rendered with a chat template over one Session (chat.h). Each turn
// renders the whole conversation, keeps the KV-cache prefix it shares with the session and
// evaluates the rest; the generation loop is Generate's.
#include "mobilellm/chat.h"

#include <algorithm>
#include <chrono>

namespace mobilellm {

Result<std::unique_ptr<Chat>> Chat::Create(Session& session, const ChatMessage& system,
                                           std::optional<ChatTemplate> chat_template) {
  if (!chat_template && session.model().chat_template() == nullptr) {
    const auto why = session.model().ApplyChatTemplate({}, true);  // says why there is none
    return why.ok() ? Status::Error("no chat template") : why.status();
  }
  std::unique_ptr<Chat> chat(new Chat(session, std::move(chat_template)));
  if (!system.content.empty()) chat->messages_.push_back({"system", system.content});
  chat->FindEndOfTurn();
  return chat;
}

Result<std::string> Chat::Render(const std::vector<ChatMessage>& messages) const {
  if (template_) return template_->Render(messages, true, session_.model().chat_tokens());
  return session_.model().ApplyChatTemplate(messages, true);
}

// The template's end of an assistant turn: render a user/assistant exchange and read what follows
// the assistant's text up to the first whitespace after some text ("<|eot_id|>", "<|im_end|>",
// "</s>"). A special token ends replies as EOS does; any other text is a stop string.
void Chat::FindEndOfTurn() {
  static const char kProbe[] = "mobilellm-end-of-turn-probe";
  std::vector<ChatMessage> probe(messages_);
  probe.push_back({"user", "hi"});
  probe.push_back({"assistant", kProbe});
  auto text = template_ ? template_->Render(probe, false, session_.model().chat_tokens())
                        : session_.model().ApplyChatTemplate(probe, false);
  if (!text.ok()) return;
  const size_t at = text->rfind(kProbe);
  if (at == std::string::npos) return;
  const std::string_view after = std::string_view(*text).substr(at + sizeof(kProbe) - 1);
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  size_t begin = 0;
  while (begin < after.size() && space(after[begin])) ++begin;
  size_t end = begin;
  while (end < after.size() && !space(after[end])) ++end;
  const std::string marker(after.substr(begin, end - begin));
  if (marker.empty()) return;
  const Tokenizer& tok = session_.model().tokenizer();
  const int id = tok.TokenId(marker);
  if (id >= 0 && tok.IsSpecial(id)) {
    end_of_turn_id_ = id;
  } else {
    end_of_turn_text_ = marker;
  }
}

std::vector<int> Chat::Ids(const std::string& text) const {
  const Model& model = session_.model();
  size_t common = 0;
  const size_t most = std::min(text.size(), state_.cached_text.size());
  while (common < most && text[common] == state_.cached_text[common]) ++common;
  // Keep the ids of the longest cached text prefix the rendering still holds whole (a reply may
  // come back altered: cut before a stop string, an invalid UTF-8 tail replaced), tokenize the
  // rest; without one, tokenize it all.
  size_t n = 0, end = 0;
  for (const auto& [ids, bytes] : state_.boundaries) {
    if (bytes > common) break;
    n = ids, end = bytes;
  }
  if (n == 0) return model.Tokenize(text, false);
  std::vector<int> ids(session_.tokens().begin(), session_.tokens().begin() + n);
  const std::vector<int> rest =
      model.tokenizer().Encode(std::string_view(text).substr(end), /*continuation=*/true);
  ids.insert(ids.end(), rest.begin(), rest.end());
  return ids;
}

Result<ChatTurn> Chat::Send(const ChatMessage& message, const GenerateOptions& options,
                            const TokenCallback& on_text) {
  using Clock = std::chrono::steady_clock;
  const Model& model = session_.model();
  const int n_ctx = session_.n_ctx();
  if (message.role != "user") {  // context for later turns: nothing to generate
    messages_.push_back(message);
    return ChatTurn{};
  }
  const bool has_system = !messages_.empty() && messages_[0].role == "system";
  {
    // The message alone (with the system one) must fit, or no dropping can help.
    std::vector<ChatMessage> alone(messages_.begin(), messages_.begin() + (has_system ? 1 : 0));
    alone.push_back(message);
    auto text = Render(alone);
    if (!text.ok()) return text.status();
    const size_t n = model.Tokenize(*text, false).size();
    if (n >= size_t(n_ctx))
      return Status::Error("this message needs " + std::to_string(n) + " tokens with the template" +
                           (has_system ? " and the system message" : "") +
                           ", more than the context of " + std::to_string(n_ctx) +
                           "; it was not sent (shorten it or raise -c)");
  }
  const std::vector<ChatMessage> before = messages_;
  messages_.push_back(message);
  ChatTurn turn;
  // Room for the reply: drop the oldest exchanges (a user message and what follows it, up to the
  // next user message) until the rendered conversation leaves it, or only this message is left.
  const int room = std::max(1, std::min(options.max_tokens, n_ctx / 4));
  std::string text;
  std::vector<int> ids;
  for (;;) {
    auto rendered = Render(messages_);
    if (!rendered.ok()) {
      messages_ = before;
      return rendered.status();
    }
    text = std::move(rendered).value();
    ids = Ids(text);
    const size_t first = has_system ? 1 : 0, last = messages_.size() - 1;
    if (int(ids.size()) + room <= n_ctx || first >= last) break;
    size_t end = first + 1;
    while (end < last && messages_[end].role != "user") ++end;
    messages_.erase(messages_.begin() + first, messages_.begin() + end);
    turn.n_dropped += int(end - first);
  }

  // Keep the longest cached prefix; at least one id is evaluated, for the logits to sample from.
  const std::vector<int>& cached = session_.tokens();
  size_t keep = 0;
  while (keep < cached.size() && keep < ids.size() && cached[keep] == ids[keep]) ++keep;
  if (keep == ids.size()) --keep;
  session_.Truncate(int(keep));
  state_.cached_text.clear();  // until the turn is done, the cache holds no known text
  state_.boundaries.clear();
  turn.n_reused = int(keep);

  GenerateOptions go = options;
  if (end_of_turn_id_ >= 0) go.stop_ids.push_back(end_of_turn_id_);
  if (!end_of_turn_text_.empty()) go.stop.push_back(end_of_turn_text_);
  auto reply = Generate(session_, std::vector<int>(ids.begin() + keep, ids.end()), go, on_text);
  if (!reply.ok()) {
    messages_ = before;
    return reply.status();
  }
  turn.reply = std::move(reply).value();
  GenerateResult& r = turn.reply;

  // When -n ends the reply, its last id was sampled but not evaluated: evaluate it now, so that
  // the next turn finds the whole reply in the cache.
  const size_t in_cache = size_t(session_.pos()) - ids.size();
  if (r.stop_reason == StopReason::kMaxTokens && in_cache < r.ids.size() &&
      session_.pos() + int(r.ids.size() - in_cache) <= n_ctx) {
    const auto t0 = Clock::now();
    const Status s = session_.Evaluate(r.ids.data() + in_cache, int(r.ids.size() - in_cache));
    if (!s.ok()) {
      messages_ = before;
      return s;
    }
    r.decode_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ++r.n_decoded;
  }
  // Reserved first, so that a turn's allocations do not grow with its reply (alloc_test.cpp).
  const std::vector<int>& tokens = session_.tokens();
  size_t bytes = text.size();
  for (size_t i = ids.size(); i < tokens.size(); ++i) bytes += model.TokenBytes(tokens[i]).size();
  state_.cached_text.reserve(bytes);
  state_.cached_text = text;
  state_.boundaries.reserve(tokens.size() - ids.size() + 1);
  state_.boundaries.push_back({ids.size(), text.size()});
  for (size_t i = ids.size(); i < tokens.size(); ++i) {
    state_.cached_text += model.TokenBytes(tokens[i]);
    state_.boundaries.push_back({i + 1, state_.cached_text.size()});
  }
  // The reply as the model wrote it, so that the next rendering holds the cached ids' bytes.
  messages_.push_back({"assistant", r.bytes});
  return turn;
}

bool Chat::Undo() {
  const auto it = std::find_if(messages_.rbegin(), messages_.rend(),
                               [](const ChatMessage& m) { return m.role == "user"; });
  if (it == messages_.rend()) return false;
  messages_.erase(std::prev(it.base()), messages_.end());
  return true;
}

void Chat::Reset() {
  const bool has_system = !messages_.empty() && messages_[0].role == "system";
  messages_.resize(has_system ? 1 : 0);
}

Status Chat::Save(const std::string& path) const {
  return session_.Save(path);
}

ChatState Chat::state() const {
  ChatState state = state_;
  state.messages = messages_;
  return state;
}

Status Chat::Load(const std::string& path, ChatState state) {
  MOBILELLM_RETURN_IF_ERROR(session_.Load(path));
  messages_ = std::move(state.messages);
  state_ = {};
  // Boundaries that do not fit the loaded ids and text are dropped: the next turn then tokenizes
  // the whole rendering and reuses the prefix it shares with the cache.
  size_t ids = 0, bytes = 0;
  for (const auto& [n, b] : state.boundaries) {
    if (n < ids || b < bytes || n > session_.tokens().size() || b > state.cached_text.size())
      return {};
    ids = n, bytes = b;
  }
  state_.cached_text = std::move(state.cached_text);
  state_.boundaries = std::move(state.boundaries);
  return {};
}

}  // namespace mobilellm
