// Chat: a conversation over one Session, rendered with the model's chat template (or another
// one), each turn evaluating only what the KV cache does not already hold.
//
//   auto chat = mobilellm::Chat::Create(**session, {"system", "Be brief."});
//   auto turn = (*chat)->Send({"user", "Hi"}, options, on_text);  // streams the reply
//   // turn->n_reused ids were already in the cache; turn->reply.prompt_ids were evaluated.
//
// What it is not: a tokenizer of special tokens the tokenizer itself does not know (a
// SentencePiece model sees "<s>" in the rendered text as characters, as Model::Tokenize does), nor
// a server: one conversation, one thread, one Session.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mobilellm/chat_template.h"
#include "mobilellm/mobilellm.h"

namespace mobilellm {

// One exchange: the ids evaluated for it, the reply, and why the reply ended.
struct ChatTurn {
  int n_reused = 0;   // ids of the rendered conversation already in the KV cache
  int n_dropped = 0;  // oldest messages dropped (after the system one) to fit the context
  // reply.prompt_ids: the ids evaluated this turn (the rendered conversation after n_reused);
  // reply.ids, reply.text: the reply (a stop string, EOS and end-of-turn token excluded).
  GenerateResult reply;
};

// What a chat holds besides its Session, for saving beside a session file: the messages, and the
// text the cached ids stand for (a prefix of cached_text of boundaries[i].second bytes is exactly
// what the first boundaries[i].first ids encode), so that a loaded chat reuses every cached id.
struct ChatState {
  std::vector<ChatMessage> messages;
  std::string cached_text;
  std::vector<std::pair<size_t, size_t>> boundaries;  // (ids, bytes), both increasing
};

class Chat {
 public:
  // Starts a conversation on `session` (which it rewinds and extends; the session must outlive
  // the Chat), with `system` as its first message unless its content is empty. `chat_template`
  // replaces the model's own when given. Errors, one line: the model has no chat template (the
  // message points to `mobilellm generate` and `--chat-template`), or the template does not
  // render a conversation.
  static Result<std::unique_ptr<Chat>> Create(Session& session, const ChatMessage& system = {},
                                              std::optional<ChatTemplate> chat_template = {});

  // Adds `message` (role "user": the reply is generated; any other role is only added), renders
  // the whole conversation with add_generation_prompt, keeps the longest prefix of
  // session.tokens() it shares, evaluates the rest and generates the reply, which ends at an EOS
  // id, the template's end-of-turn token or text, options.max_tokens, a stop string or a cancel.
  // When the rendered conversation leaves less than min(max_tokens, n_ctx / 4) tokens for the
  // reply, the oldest exchanges after the system message are dropped (ChatTurn::n_dropped).
  // Errors leave the conversation as it was: the message alone (with the system one) does not fit
  // the context, the template raised an error, or evaluation failed.
  Result<ChatTurn> Send(const ChatMessage& message, const GenerateOptions& options,
                        const TokenCallback& on_text);

  // Drops the last exchange (the last user message and everything after it); false if none.
  bool Undo();
  // Back to the system message alone.
  void Reset();
  const std::vector<ChatMessage>& messages() const { return messages_; }

  // Session::Save(path); the caller saves state() beside it. Load: Session::Load(path) and the
  // state saved with it (messages and cached text; boundaries that do not fit the loaded session
  // are ignored, costing reuse, not correctness). Errors are Session::Load's, changing nothing.
  Status Save(const std::string& path) const;
  ChatState state() const;
  Status Load(const std::string& path, ChatState state);

  // What ends a reply besides the model's EOS ids: the token the template writes after an
  // assistant message when it is a special token (-1 if none), else that text as a stop string.
  int end_of_turn_id() const { return end_of_turn_id_; }
  const std::string& end_of_turn_text() const { return end_of_turn_text_; }

 private:
  Chat(Session& session, std::optional<ChatTemplate> chat_template)
      : session_(session), template_(std::move(chat_template)) {}
  Result<std::string> Render(const std::vector<ChatMessage>& messages) const;
  // The ids of `text`, a rendering of the conversation: the cached ids of the longest boundary
  // of state_ it starts with (the last turn's rendering, then each reply token), then the rest
  // tokenized; else the whole text tokenized.
  std::vector<int> Ids(const std::string& text) const;
  void FindEndOfTurn();

  Session& session_;
  std::optional<ChatTemplate> template_;
  std::vector<ChatMessage> messages_;
  ChatState state_;  // cached_text and boundaries (messages_ apart): empty when unknown
  int end_of_turn_id_ = -1;
  std::string end_of_turn_text_;
};

}  // namespace mobilellm
