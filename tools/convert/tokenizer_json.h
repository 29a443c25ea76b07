// HF tokenizer.json -> the byte-level BPE blob the engine reads (format.h, TokenizerKind::
// kByteLevelBpe). Host-only (nlohmann-json); the engine never parses JSON.
//
// Accepted: model BPE (merges as "a b" strings or [a, b] pairs, ignore_merges either way) with
// byte-level pre-tokenization, either Sequence[Split(known pattern, Isolated), ByteLevel(
// use_regex false)] (Llama-3, MobileLLM-R1) or ByteLevel(use_regex true) (GPT-2); no normalizer;
// decoder ByteLevel; added tokens special or not. Anything else is refused naming what it is: an
// unknown pattern, normalizer, model type or option (dropout, unk_token, byte_fallback, subword
// affixes, added-token lstrip/rstrip/single_word, add_prefix_space, truncation, padding).
#pragma once

#include <string>
#include <string_view>

#include "mobilellm/format.h"
#include "mobilellm/status.h"

namespace mobilellm::convert {

// The blob for the tokenizer.json text `json`. `where` (the file name) starts every error.
Result<std::string> TokenizerJsonToBlob(std::string_view json, const std::string& where);

// A tokenizer file as the .mlm stores it: a tokenizer.json (recognised by its first non-blank
// byte, '{') is converted to the byte-level BPE blob; anything else is taken as a SentencePiece
// tokenizer.model and checked when parsed.
struct TokenizerData {
  format::TokenizerKind kind = format::TokenizerKind::kSentencePiece;
  std::string bytes;  // the "tokenizer" tensor
};
Result<TokenizerData> ReadTokenizerFile(const std::string& path);

}  // namespace mobilellm::convert
