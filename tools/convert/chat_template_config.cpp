// Chat template: tokenizer_config.json -> checked -> optional .mlm tensors (see the header).
#include "chat_template_config.h"

#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "mobilellm/chat_template.h"

namespace mobilellm::convert {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxConfigBytes = 16ull << 20;

// A special token: "<s>" or {"content": "<s>", "lstrip": false, ...}.
Result<std::optional<std::string>> TokenString(const json& j, const char* key,
                                               const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return Status::Error(where + ": '" + key +
                       "' is neither a string nor an object with a string 'content'");
}

}  // namespace

Result<ChatTemplateConfig> ReadChatTemplateConfig(const std::string& dir) {
  ChatTemplateConfig config;
  config.where = dir + "/tokenizer_config.json";
  if (::access(config.where.c_str(), F_OK) != 0) return config;
  std::string text;
  MOBILELLM_RETURN_IF_ERROR(ReadFile(config.where, &text, kMaxConfigBytes));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Error(config.where + ": not a JSON object");
  const auto t = j.find("chat_template");
  if (t != j.end() && t->is_string()) {
    config.source = t->get<std::string>();
  } else if (t != j.end() && t->is_array()) {
    bool found = false;
    for (const json& named : *t) {
      if (named.is_object() && named.value("name", json()) == "default") {
        const auto body = named.find("template");
        if (body == named.end() || !body->is_string()) break;
        config.source = body->get<std::string>();
        found = true;
      }
    }
    if (!found) {
      return Status::Error(config.where +
                           ": 'chat_template' is a list without a template named 'default'");
    }
  } else if (t != j.end() && !t->is_null()) {
    return Status::Error(config.where + ": 'chat_template' is neither a string nor a list");
  }
  auto bos = TokenString(j, "bos_token", config.where);
  if (!bos.ok()) return bos.status();
  auto eos = TokenString(j, "eos_token", config.where);
  if (!eos.ok()) return eos.status();
  config.bos_token = *bos;
  config.eos_token = *eos;
  return config;
}

ChatTemplateConfig ChatTemplateConfigOf(const ModelFile& file) {
  ChatTemplateConfig config;
  config.where = file.path();
  auto bytes = [&](const char* name) -> std::optional<std::string> {
    const format::TensorEntry* e = file.Find(name);
    if (e == nullptr) return std::nullopt;
    return std::string(file.Bytes(*e));
  };
  config.source = bytes(format::kChatTemplateTensor).value_or("");
  config.bos_token = bytes(format::kBosTokenTensor);
  config.eos_token = bytes(format::kEosTokenTensor);
  return config;
}

Status OverrideChatTemplate(ChatTemplateConfig& config, const std::string& path) {
  MOBILELLM_RETURN_IF_ERROR(ReadFile(path, &config.source, kMaxConfigBytes));
  if (config.source.empty()) return Status::Error(path + ": empty chat template");
  config.where = path;
  return {};
}

Status CheckChatTemplate(const ChatTemplateConfig& config) {
  if (config.source.empty()) return {};
  const auto parsed = ChatTemplate::Parse(config.source);
  if (!parsed.ok()) return Status::Error(config.where + ": " + parsed.status().message());
  return {};
}

void AddChatTemplate(ModelWriter& w, const ChatTemplateConfig& config) {
  if (config.source.empty()) return;
  auto add = [&w](const char* name, const std::string& bytes) {
    if (bytes.empty()) return;  // a zero-length tensor says nothing an absent one does not
    w.Add(name, DType::kU8, {int64_t(bytes.size())}, [&bytes](uint8_t* dst) {
      std::memcpy(dst, bytes.data(), bytes.size());
      return Status();
    });
  };
  add(format::kChatTemplateTensor, config.source);
  if (config.bos_token) add(format::kBosTokenTensor, *config.bos_token);
  if (config.eos_token) add(format::kEosTokenTensor, *config.eos_token);
}

}  // namespace mobilellm::convert
