// `mobilellm chat`: a conversation with a model's chat template, a thin client of
// mobilellm::Chat.
//
// On a terminal: a "> " prompt, the reply streamed, a stats line on stderr; Ctrl-C stops the
// reply (the conversation keeps what was said), Ctrl-D or /exit quits. Otherwise each stdin line
// is a user turn, or a JSON object {"role": ..., "content": ...}; --json prints one JSON line per
// turn. Slash commands work in both: /exit, /reset, /undo, /save FILE, /load FILE.
//
// A turn that fails (too long for the context, a template error) prints one error line and the
// chat goes on; a script's run then exits 1. Nothing of a turn reaches stdout before its prompt is
// evaluated, so a failed turn prints nothing there.
#include "chat.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "mobilellm/chat.h"
#include "threads.h"

namespace mobilellm::cli {
namespace {

constexpr const char* kSlashHelp =
    "commands: /exit, /reset, /undo, /save FILE, /load FILE (Ctrl-C stops a reply, Ctrl-D quits)";

// The chat saved beside a session file, as FILE.json: {"messages": [{role, content or
// content_hex}...],
// "cached_text_hex": the text the cached ids stand for (hex: it may hold any bytes),
// "boundaries": [[ids, bytes]...]} (ChatState).
std::string StatePath(const std::string& session_path) {
  return session_path + ".json";
}

std::string Hex(const std::string& bytes) {
  std::string hex;
  for (unsigned char c : bytes) {
    hex += "0123456789abcdef"[c >> 4];
    hex += "0123456789abcdef"[c & 15];
  }
  return hex;
}

// Hex digits back to bytes; false on anything else.
bool Unhex(const std::string& hex, std::string* bytes) {
  const auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (hex.size() % 2 != 0) return false;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    *bytes += char(hi * 16 + lo);
  }
  return true;
}

Status SaveChat(const Chat& chat, const std::string& path) {
  const ChatState state = chat.state();
  nlohmann::json j = {{"messages", nlohmann::json::array()}, {"boundaries", state.boundaries}};
  for (const ChatMessage& m : state.messages) {
    // A reply may hold invalid UTF-8 (a model can emit any byte): such content is saved in hex.
    nlohmann::json message = {{"role", m.role}, {"content", m.content}};
    try {
      (void)message.dump();
    } catch (const nlohmann::json::type_error&) {
      message = {{"role", m.role}, {"content_hex", Hex(m.content)}};
    }
    j["messages"].push_back(message);
  }
  j["cached_text_hex"] = Hex(state.cached_text);
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  MOBILELLM_RETURN_IF_ERROR(chat.Save(path));
  return WriteFileAtomic(
      StatePath(path), [&](const AppendBytes& append) { return append(text.data(), text.size()); });
}

// A {"role": string, "content": string} object, or nullopt.
std::optional<ChatMessage> ParseMessage(const nlohmann::json& j) {
  if (!j.is_object()) return std::nullopt;
  const auto role = j.find("role"), content = j.find("content");
  if (role == j.end() || content == j.end() || !role->is_string() || !content->is_string())
    return std::nullopt;
  return ChatMessage{role->get<std::string>(), content->get<std::string>()};
}

Status LoadChat(Chat& chat, const std::string& path) {
  const std::string where = StatePath(path);
  std::string text;
  MOBILELLM_RETURN_IF_ERROR(ReadFile(where, &text, 256ull << 20));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  const auto error = [&] {
    return Status::Error(where +
                         ": expected {\"messages\": [{\"role\", \"content\"}...], "
                         "\"cached_text_hex\", \"boundaries\"} as /save writes it");
  };
  if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array()) return error();
  ChatState state;
  for (const nlohmann::json& m : j["messages"]) {
    auto message = ParseMessage(m);
    if (!message && m.is_object() && m.contains("role") && m["role"].is_string() &&
        m.contains("content_hex") && m["content_hex"].is_string()) {
      message = ChatMessage{m["role"], ""};
      if (!Unhex(m["content_hex"], &message->content)) return error();
    }
    if (!message) return error();
    state.messages.push_back(std::move(*message));
  }
  // The cache bookkeeping only saves work: when it is missing or malformed, the next turn
  // tokenizes the whole conversation and reuses the prefix the cache shares with it.
  const auto hex = j.find("cached_text_hex");
  const auto boundaries = j.find("boundaries");
  if (hex != j.end() && hex->is_string() && boundaries != j.end() && boundaries->is_array()) {
    bool ok = Unhex(hex->get_ref<const std::string&>(), &state.cached_text);
    for (const nlohmann::json& b : *boundaries) {
      ok = ok && b.is_array() && b.size() == 2 && b[0].is_number_unsigned() &&
           b[1].is_number_unsigned();
      if (ok) state.boundaries.push_back({b[0].get<size_t>(), b[1].get<size_t>()});
    }
    if (!ok) state.cached_text.clear(), state.boundaries.clear();
  }
  return chat.Load(path, std::move(state));
}

nlohmann::ordered_json TurnJson(int n, const ChatTurn& t) {
  const GenerateResult& r = t.reply;
  const double prefill_tps = r.prefill_ms > 0 ? r.prompt_ids.size() * 1000.0 / r.prefill_ms : 0;
  const double decode_tps = r.decode_ms > 0 ? r.n_decoded * 1000.0 / r.decode_ms : 0;
  return {{"turn", n},
          {"prompt_ids", r.prompt_ids},
          {"n_reused", t.n_reused},
          {"ids", r.ids},
          {"text", r.text},
          {"stop_reason", StopReasonName(r.stop_reason)},
          {"n_dropped", t.n_dropped},
          {"timings",
           {{"prefill_ms", r.prefill_ms},
            {"decode_ms", r.decode_ms},
            {"prefill_tokens_per_s", prefill_tps},
            {"decode_tokens_per_s", decode_tps}}}};
}

}  // namespace

CLI::App* AddChatCommand(CLI::App& app, ChatArgs& a) {
  auto* chat = app.add_subcommand(
      "chat",
      "Chat with a model's chat template. On a terminal: interactive (Ctrl-C stops a reply, "
      "Ctrl-D or /exit quits; /reset, /undo, /save FILE, /load FILE). Otherwise each stdin line "
      "is a user turn, or a JSON object {\"role\": ..., \"content\": ...}");
  chat->add_option("-m,--model", a.model, "Model file (.mlm) with a chat template")->required();
  chat->add_option("--system", a.system, "System message");
  chat->add_option("-n,--n-predict", a.n, "Tokens per reply at most")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  AddSamplingFlags(chat, a.sampling);
  chat->add_option("-c,--ctx", a.ctx,
                   "Context length (KV cache); default: the model's. When full, the oldest "
                   "exchanges are dropped")
      ->check(CLI::Range(1, 1 << 20));
  chat->add_option("-t,--threads", a.threads, "Threads; default: physical cores")
      ->check(CLI::Range(1, 256));
  chat->add_option("--kv-type", a.kv_type, "KV-cache type: f16 (half the memory) or f32")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "f32"}));
  chat->add_option("--stop", a.stop, "End a reply when this string is generated (repeatable)");
  chat->add_option("--chat-template", a.chat_template,
                   "Jinja chat template file to use instead of the model's");
  chat->add_flag("--json", a.json,
                 "One JSON line per turn: turn, prompt_ids, n_reused, ids, text, stop_reason, "
                 "n_dropped, timings");
  chat->add_flag("--preload", a.preload, "Fault in and lock all weights at load");
  chat->add_flag("-v,--verbose", a.verbose, "Print the kernel table and threads");
  return chat;
}

int RunChat(const ChatArgs& a) {
  auto model_r = LoadModel(a.model, a.preload, a.verbose);
  if (!model_r.ok()) return Fail(model_r.status().message());
  std::shared_ptr<const Model> model = *model_r;
  std::optional<ChatTemplate> chat_template;
  if (!a.chat_template.empty()) {
    std::string source;
    if (Status s = ReadFile(a.chat_template, &source); !s.ok()) return Fail(s.message());
    auto parsed = ChatTemplate::Parse(source);
    if (!parsed.ok()) return Fail(a.chat_template + ": " + parsed.status().message());
    chat_template = std::move(parsed).value();
  }
  SessionOptions so;
  so.n_ctx = a.ctx;
  so.n_threads = UsableThreads(a.threads);
  so.kv_type = a.kv_type == "f32" ? DType::kF32 : DType::kF16;
  auto session_r = Session::Create(model, so);
  if (!session_r.ok()) return Fail(session_r.status().message());
  Session& session = **session_r;
  auto chat_r = Chat::Create(session, {"system", a.system}, std::move(chat_template));
  if (!chat_r.ok()) return Fail(chat_r.status().message());
  Chat& chat = **chat_r;
  if (a.verbose)
    std::fprintf(stderr, "kernels: %s, threads: %d, context: %d\n", model->kernels().name,
                 session.n_threads(), session.n_ctx());

  const bool tty = ::isatty(STDIN_FILENO);
  GenerateOptions go;
  go.max_tokens = a.n;
  go.stop = a.stop;
  go.sampling = ToSamplerOptions(a.sampling);
  go.cancel = &g_cancel;
  if (tty) {
    std::signal(SIGINT, [](int) { g_cancel.store(true); });
    std::fprintf(stderr, "%s\n", kSlashHelp);
  }

  int turns = 0, failed = 0;
  std::string line;
  for (int line_no = 1;; ++line_no) {
    if (tty) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto fail = [&](const std::string& message) {
      Fail(tty ? message : "stdin line " + std::to_string(line_no) + ": " + message);
      ++failed;
    };

    // Slash commands.
    const auto command = [&](const char* name) {
      const size_t n = std::strlen(name);
      return line.compare(0, n, name) == 0 && (line.size() == n || line[n] == ' ');
    };
    const auto argument = [&] {
      const size_t at = line.find_first_not_of(' ', line.find(' '));
      return at == std::string::npos ? std::string() : line.substr(at);
    };
    if (command("/exit")) break;
    if (command("/reset")) {
      chat.Reset();
      std::fprintf(stderr, "[conversation reset]\n");
      continue;
    }
    if (command("/undo")) {
      std::fprintf(stderr, chat.Undo() ? "[last exchange dropped]\n" : "[nothing to undo]\n");
      continue;
    }
    if (command("/save") || command("/load")) {
      const std::string path = argument();
      if (path.empty()) {
        fail(line.substr(0, 5) + " needs a FILE");
        continue;
      }
      const bool save = command("/save");
      const Status s = save ? SaveChat(chat, path) : LoadChat(chat, path);
      if (!s.ok()) {
        fail(s.message());
        continue;
      }
      std::fprintf(stderr, "[%s %s: %zu messages, %d tokens]\n", save ? "saved" : "loaded",
                   path.c_str(), chat.messages().size(), session.pos());
      continue;
    }
    if (line.size() > 1 && line[0] == '/' && line[1] != '/') {
      fail("unknown command '" + line.substr(0, line.find(' ')) + "'; " + kSlashHelp);
      continue;
    }

    ChatMessage message{"user", line};
    if (!tty && !line.empty() && line[0] == '{') {
      auto parsed = ParseMessage(nlohmann::json::parse(line, nullptr, false));
      if (!parsed) {
        fail("expected a JSON object with string \"role\" and \"content\"");
        continue;
      }
      message = std::move(*parsed);
    }
    if (message.role == "user" && message.content.empty() && tty) continue;

    g_cancel.store(false);
    bool streamed = false;
    auto turn = chat.Send(message, go, [&](std::string_view text, int) {
      if (!a.json && !text.empty()) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        streamed = true;
      }
      return true;
    });
    if (!turn.ok()) {
      fail(turn.status().message());
      continue;
    }
    if (message.role != "user") continue;
    ++turns;
    const GenerateResult& r = turn->reply;
    if (turn->n_dropped > 0)
      std::fprintf(stderr,
                   "mobilellm: note: the context of %d tokens was full: dropped the %d oldest "
                   "messages after the system message and re-evaluated %zu tokens\n",
                   session.n_ctx(), turn->n_dropped, r.prompt_ids.size());
    if (a.json) {
      std::printf("%s\n", TurnJson(turns, *turn)
                              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                              .c_str());
    } else if (streamed || !tty) {
      std::printf("\n");
    }
    std::fflush(stdout);
    if (tty || a.verbose)
      std::fprintf(stderr,
                   "[reused %d, evaluated %zu, generated %zu tokens, %.1f tok/s, stop: %s]\n",
                   turn->n_reused, r.prompt_ids.size(), r.ids.size(),
                   r.decode_ms > 0 ? r.n_decoded * 1000.0 / r.decode_ms : 0.0,
                   StopReasonName(r.stop_reason));
    if (r.stop_reason == StopReason::kContextFull)
      std::fprintf(stderr,
                   "mobilellm: note: the reply stopped at the end of the context (%d tokens); "
                   "the next turn drops the oldest exchanges\n",
                   session.n_ctx());
  }
  if (tty) std::fputs("\n", stdout);
  return failed > 0 && !tty ? 1 : 0;
}

}  // namespace mobilellm::cli
