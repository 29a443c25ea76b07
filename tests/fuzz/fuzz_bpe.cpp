// Fuzzes the byte-level BPE tokenizer. The first byte picks what the rest is:
//   even: a blob (format.h kByteLevelBpe): it must load or give one error, and a blob that loads
//         must encode and decode any text without a crash;
//   odd:  text for a fixed valid tokenizer (Llama-3 or GPT-2 pattern by bit 1): encoding must not
//         crash, and decoding the ids must give the text back when it is valid UTF-8.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mobilellm/tokenizer.h"

namespace {

// A tokenizer with every single byte, a few merges and two added tokens; `gpt2` picks the pattern.
const mobilellm::Tokenizer& Fixed(bool gpt2) {
  static const auto make = [](uint32_t pre) {
    std::string text, ends, merges, added;
    auto put = [](std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); };
    auto token = [&](std::string_view t) {
      text += t;
      put(&ends, uint32_t(text.size()));
    };
    for (int b = 0; b < 256; ++b) token(std::string(1, char(b)));
    token("ab"), token("abc"), token(" a"), token("<|x|>"), token("\xC3\xA9\xC3\xA9");
    const uint32_t m[][3] = {{'a', 'b', 256}, {256, 'c', 257}, {' ', 'a', 258}};
    for (const auto& r : m) put(&merges, r[0]), put(&merges, r[1]), put(&merges, r[2]);
    put(&added, 259), put(&added, 1), put(&added, 260), put(&added, 0);
    std::string blob = "BBPE";
    for (uint32_t v : {1u, pre, 1u, 261u, 3u, 2u, uint32_t(text.size())}) put(&blob, v);
    auto t = mobilellm::Tokenizer::Parse(mobilellm::format::TokenizerKind::kByteLevelBpe,
                                         blob + ends + merges + added + text);
    if (!t.ok()) std::abort();
    return *t;
  };
  static const mobilellm::Tokenizer llama3 = make(1), gpt2_t = make(2);
  return gpt2 ? gpt2_t : llama3;
}

bool ValidUtf8(std::string_view s) {
  // Decode's U+FFFD replacement changes invalid text; valid text must round-trip.
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = uint8_t(s[i]);
    const int n = c < 0x80                 ? 1
                  : c >= 0xC2 && c <= 0xDF ? 2
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xF0 && c <= 0xF4 ? 4
                                           : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k)
      if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return false;
    if (n == 3 &&
        ((c == 0xE0 && uint8_t(s[i + 1]) < 0xA0) || (c == 0xED && uint8_t(s[i + 1]) > 0x9F)))
      return false;
    if (n == 4 &&
        ((c == 0xF0 && uint8_t(s[i + 1]) < 0x90) || (c == 0xF4 && uint8_t(s[i + 1]) > 0x8F)))
      return false;
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    const auto t =
        mobilellm::Tokenizer::Parse(mobilellm::format::TokenizerKind::kByteLevelBpe, rest);
    if (!t.ok()) return 0;
    const auto ids = t->Encode(rest.substr(0, 512));
    (void)t->Decode(ids);
    return 0;
  }
  const mobilellm::Tokenizer& t = Fixed(data[0] & 2);
  const auto ids = t.Encode(rest);
  const std::string back = t.Decode(ids);
  if (ValidUtf8(rest) && back != rest) std::abort();
  std::string streamed;
  for (int id : ids) streamed += t.PieceBytes(id);
  if (streamed != rest) std::abort();  // pieces are the text's bytes, whatever they are
  return 0;
}
