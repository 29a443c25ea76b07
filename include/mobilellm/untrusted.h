// Reading untrusted bytes: checked offset/size arithmetic, and quoting file text in messages.
//
// Every reader of a file someone else made (the .mlm loader, the converter's zip, safetensors and
// pickle readers, the tokenizer) computes offsets and sizes with these and nothing else, so no
// bound check can wrap: a sum or product that does not fit is an error, never a small number.
// Not a parser: it holds no state and knows no format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace mobilellm {

// *out = a + b; false (and *out unspecified) if the exact sum does not fit in T.
template <class T>
[[nodiscard]] inline bool CheckedAdd(T a, T b, T* out) {
  static_assert(std::is_integral_v<T>);
  return !__builtin_add_overflow(a, b, out);
}

// *out = a * b; false if the exact product does not fit in T.
template <class T>
[[nodiscard]] inline bool CheckedMul(T a, T b, T* out) {
  static_assert(std::is_integral_v<T>);
  return !__builtin_mul_overflow(a, b, out);
}

// True if the byte range [offset, offset + length) lies inside [0, size). No arithmetic that can
// wrap: `offset + length` is never formed.
[[nodiscard]] inline bool InRange(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

// The range [offset, offset + count * unit) if it lies inside [0, size): *end is its end.
// False when the product or the sum overflows or the range leaves [0, size).
[[nodiscard]] inline bool RangeWithin(uint64_t offset, uint64_t count, uint64_t unit, uint64_t size,
                                      uint64_t* end) {
  uint64_t length = 0;
  if (!CheckedMul(count, unit, &length) || !InRange(offset, length, size)) return false;
  *end = offset + length;
  return true;
}

// Text taken from a file, made safe for a one-line message: printable ASCII is kept, every other
// byte (newlines, escapes, UTF-8) becomes \xNN, and at most `max` input bytes are shown ("..."
// marks a cut). Use it for every name or string a message quotes from an untrusted file.
inline std::string Printable(std::string_view s, size_t max = 64) {
  std::string out;
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace mobilellm
