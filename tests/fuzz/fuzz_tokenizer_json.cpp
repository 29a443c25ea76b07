// Fuzzes the converter's tokenizer.json reader: any bytes must give a blob or one error, and every
// blob it makes must load in the engine and encode and decode without a crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mobilellm/tokenizer.h"
#include "tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto blob = mobilellm::convert::TokenizerJsonToBlob(text, "tokenizer.json");
  if (!blob.ok()) return 0;
  const auto t =
      mobilellm::Tokenizer::Parse(mobilellm::format::TokenizerKind::kByteLevelBpe, *blob);
  if (!t.ok()) std::abort();  // the converter wrote a blob the engine refuses
  const auto ids = t->Encode(text.substr(0, 256));
  (void)t->Decode(ids);
  return 0;
}
