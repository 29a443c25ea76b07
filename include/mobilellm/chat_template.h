// Chat templates: the Jinja subset that Hugging Face model templates use, rendered as
// transformers' `apply_chat_template` renders them (Jinja2 in an immutable sandbox with
// trim_blocks and lstrip_blocks, its `tojson`, the `raise_exception` function, loop controls).
//
// This is our own small interpreter: no Debian-packaged C++ Jinja library links into a static
// phone binary. It is not a general Jinja engine. What it supports:
//   statements   {% if/elif/else %}, {% for x in xs [if cond] %} (with {% else %}, {% break %},
//                {% continue %}, `loop.index0/index/revindex/revindex0/first/last/length/
//                previtem/nextitem`), {% set x = e %}, {% set a, b = e %}, {% set ns.x = e %},
//                {% raw %}, {% generation %}, {# comments #}, whitespace control -/+;
//   expressions  string/integer/list/dict literals, + - * // % ** on integers, + and ~ on strings,
//                comparisons (chained), in / not in, and / or / not, `a if c else b`, subscripts,
//                attributes and slices on lists, dicts and strings;
//   calls        namespace(...), raise_exception(msg), range(...); string methods strip, lstrip,
//                rstrip, startswith, endswith, split, title, upper, lower, replace, capitalize;
//                dict methods items, keys, values, get;
//   filters      trim, length/count, upper, lower, tojson, default/d, join, replace, first, last,
//                string, list, items, capitalize;
//   tests        defined, undefined, none, string, mapping, number, integer, boolean, true, false,
//                iterable, sequence, even, odd, divisibleby, eq/equalto, ne.
// Anything else (macros, includes, float literals, `/`, unknown filters, tests, methods or
// functions) is refused by Parse with the construct and its line named.
//
// Strings are UTF-8; length, indexing and slicing count code points as Python does. Case mapping
// covers ASCII, Latin-1, Greek and Cyrillic; other scripts pass through unchanged.
//
// Hostile templates are safe: nesting depth, steps, loop iterations, string sizes and output
// size are bounded (RenderLimits) and exceeding a bound is an error, never a crash or a hang.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/status.h"

namespace mobilellm {

// One turn of a conversation: role "system", "user", "assistant" (or any other the template
// knows) and its text.
struct ChatMessage {
  std::string role;
  std::string content;
};

// The special-token strings a template may use as `bos_token` / `eos_token`; an absent one is
// undefined in the template (as in transformers when the tokenizer has no such token).
struct ChatSpecialTokens {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

// Work bounds for one Render. Each is generous for real templates (a 5-turn Llama-3 render takes
// about 150 steps, 1000 turns about 30000) and small enough that any template ends within seconds
// (a step costs 1-5 us).
struct RenderLimits {
  size_t max_output_bytes = size_t(16) << 20;     // the rendered text, and any one string
  uint64_t max_steps = 1'000'000;                 // expressions evaluated + loop iterations
  uint64_t max_work_bytes = uint64_t(256) << 20;  // bytes of all strings and lists created
};

namespace jinja {
struct Program;
}

class ChatTemplate {
 public:
  // Parses `source`. Errors: "chat template line N: <what>", e.g. an unsupported construct
  // ("unsupported construct '{% macro %}'"), an unknown filter or a syntax error.
  static Result<ChatTemplate> Parse(std::string_view source);

  // Renders with the variables apply_chat_template passes: messages (a list of {role, content}
  // dicts), add_generation_prompt, bos_token, eos_token. Errors: "chat template line N: <what>",
  // e.g. the message of a raise_exception call, an undefined variable's attribute, a limit.
  Result<std::string> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                             const ChatSpecialTokens& tokens = {},
                             const RenderLimits& limits = {}) const;

  const std::string& source() const;

 private:
  explicit ChatTemplate(std::shared_ptr<const jinja::Program> program)
      : program_(std::move(program)) {}
  std::shared_ptr<const jinja::Program> program_;
};

}  // namespace mobilellm
