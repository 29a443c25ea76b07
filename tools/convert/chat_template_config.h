// The chat template of an HF checkpoint: `chat_template`, `bos_token` and `eos_token` from its
// tokenizer_config.json, checked by parsing the template, and stored in the .mlm as the optional
// u8 tensors format.h names (kChatTemplateTensor, kBosTokenTensor, kEosTokenTensor).
#pragma once

#include <optional>
#include <string>

#include "mobilellm/model_file.h"
#include "mobilellm/status.h"

namespace mobilellm::convert {

struct ChatTemplateConfig {
  std::string source;  // the Jinja template; empty: none
  std::string where;   // the file it came from, for messages
  std::optional<std::string> bos_token, eos_token;
};

// Reads DIR/tokenizer_config.json. A missing file, or one without a template, gives an empty
// config. `chat_template` may be a string or a list of {name, template}: the one named "default".
// A token may be a string or an AddedToken object ({"content": ...}).
Result<ChatTemplateConfig> ReadChatTemplateConfig(const std::string& dir);

// The template of an existing .mlm (when re-encoding it), or an empty config.
ChatTemplateConfig ChatTemplateConfigOf(const ModelFile& file);

// Replaces the template with the contents of `path` (--chat-template FILE).
Status OverrideChatTemplate(ChatTemplateConfig& config, const std::string& path);

// Parses the template: "WHERE: chat template line N: unsupported construct '{% macro %}'".
Status CheckChatTemplate(const ChatTemplateConfig& config);

// Adds the tensors to w (config must outlive w.Write). Nothing without a template.
void AddChatTemplate(ModelWriter& w, const ChatTemplateConfig& config);

}  // namespace mobilellm::convert
