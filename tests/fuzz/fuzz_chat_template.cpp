// Fuzzes the chat-template interpreter: any bytes as a template must parse or give one error, and
// a template that parses must render (with the input's tail as message content) or give one
// error, within small limits: no crash, no sanitizer report, no hang, no unbounded memory.
//
// Input: TEMPLATE [\0 CONTENT]; the content goes into every message of a 3-turn conversation.
#include <cstdint>
#include <string_view>

#include "mobilellm/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const size_t split = bytes.find('\0');
  const std::string_view source = bytes.substr(0, split);
  const std::string content(split == std::string_view::npos ? "" : bytes.substr(split + 1));
  const auto parsed = mobilellm::ChatTemplate::Parse(source);
  if (!parsed.ok()) return 0;
  mobilellm::RenderLimits limits;
  limits.max_output_bytes = 1 << 16;
  limits.max_steps = 20000;
  limits.max_work_bytes = 4 << 20;
  mobilellm::ChatSpecialTokens tokens;
  tokens.bos_token = "<s>";
  tokens.eos_token = "</s>";
  const std::vector<mobilellm::ChatMessage> messages = {
      {"system", content}, {"user", content}, {"assistant", content}};
  for (bool add_generation_prompt : {false, true}) {
    (void)parsed->Render(messages, add_generation_prompt, tokens, limits);
  }
  return 0;
}
