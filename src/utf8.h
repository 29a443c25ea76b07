// UTF-8 helpers shared by the tokenizers (internal to the engine, not installed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mobilellm::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 character at the start of s, or 0 if it is not one.
inline size_t CharLen(std::string_view s) {
  const auto b = [&](size_t i) { return uint8_t(s[i]); };
  const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  if (s.empty()) return 0;
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    const uint32_t cp = (c & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
    return cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const uint32_t cp = (c & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
    return cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
  }
  return 0;
}

// The code point of a valid character of `len` bytes (CharLen) at the start of s.
inline uint32_t CodePoint(std::string_view s, size_t len) {
  const auto b = [&](size_t i) { return uint32_t(uint8_t(s[i])); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return (b(0) & 0x1F) << 6 | (b(1) & 0x3F);
    case 3:
      return (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
    default:
      return (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
  }
}

// Bytes as text the way the WHATWG Encoding Standard's UTF-8 decoder (JavaScript's TextDecoder,
// Rust's String::from_utf8_lossy) reads them: each maximal prefix of a valid sequence that cannot
// be completed becomes one U+FFFD, and decoding resumes at the byte that broke it.
// ref: https://encoding.spec.whatwg.org/#utf-8-decoder
inline void AppendLossy(std::string_view bytes, std::string* out) {
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const uint8_t c = uint8_t(bytes[i]);
    if (c < 0x80) {
      out->push_back(char(c));
      ++i;
      continue;
    }
    int need = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // the range of the next continuation byte
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    }
    size_t j = i + 1;
    int got = 0;
    while (need > 0 && got < need && j < n) {
      const uint8_t d = uint8_t(bytes[j]);
      if (d < lo || d > hi) break;
      lo = 0x80, hi = 0xBF;
      ++j, ++got;
    }
    if (need > 0 && got == need)
      out->append(bytes.substr(i, j - i));
    else
      out->append(kReplacement);
    i = j;
  }
}

}  // namespace mobilellm::utf8
