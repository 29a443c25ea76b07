// Fuzzes the tokenizer: any bytes as a tokenizer.model must give a tokenizer or one error; a
// tokenizer that loads must encode and decode any text without a crash.
#include <cstdint>
#include <string_view>

#include "mobilellm/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto tokenizer = mobilellm::Tokenizer::Parse(bytes);
  if (!tokenizer.ok()) return 0;
  const auto ids = tokenizer->Encode(bytes.substr(0, 256));
  (void)tokenizer->Decode(ids);
  return 0;
}
