// tokenizer.json -> byte-level BPE blob (see tokenizer_json.h and format.h).
#include "tokenizer_json.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "mobilellm/model_file.h"
#include "mobilellm/tokenizer.h"
#include "mobilellm/untrusted.h"

namespace mobilellm::convert {

namespace {

using json = nlohmann::json;

// The Split patterns we have hand-written twins of (src/byte_level_bpe.cpp), by exact text.
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves, the other 68 for
// U+0100 onwards in byte order. Returns the byte a code point stands for, or -1.
int ByteOfChar(uint32_t cp) {
  static const auto table = [] {
    std::vector<int> t(256 + 68, -1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      t[printable ? b : next++] = b;
    }
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

// Decodes one UTF-8 code point of valid JSON-parsed text at s[*i].
uint32_t NextCodePoint(std::string_view s, size_t* i) {
  const uint8_t c = uint8_t(s[*i]);
  const int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
  for (int k = 1; k < len && *i + k < s.size(); ++k) cp = cp << 6 | (uint8_t(s[*i + k]) & 0x3F);
  *i += len;
  return cp;
}

// A vocabulary string in the byte-level alphabet -> the bytes it stands for; false if a
// character is not in the alphabet.
bool DecodeByteLevel(std::string_view token, std::string* bytes) {
  bytes->clear();
  for (size_t i = 0; i < token.size();) {
    const int b = ByteOfChar(NextCodePoint(token, &i));
    if (b < 0) return false;
    bytes->push_back(char(b));
  }
  return true;
}

// File text in a message: printable ASCII only (untrusted.h).
std::string Quote(std::string_view s) {
  return "'" + Printable(s, 120) + "'";
}

// Typed reads that never throw: a wrong type is an error naming the key.
class Reader {
 public:
  explicit Reader(std::string where) : where_(std::move(where)) {}
  Status Error(const std::string& what) const { return Status::Error(where_ + ": " + what); }
  // obj[key] if it is absent, null or equals `fine`; an error naming `path` otherwise.
  template <typename T>
  Status Only(const json& obj, const char* key, const T& fine, const std::string& path) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return {};
    if (*it == json(fine)) return {};
    return Error(path + "." + key + " = " + it->dump().substr(0, 120) + " is not supported");
  }
  // A string field, or an error.
  Status String(const json& obj, const char* key, const std::string& path, std::string* out) const {
    const auto it = obj.find(key);
    if (it == obj.end() || !it->is_string()) return Error(path + "." + key + ": expected a string");
    *out = it->get<std::string>();
    return {};
  }
  // A boolean field, `fallback` if absent or null.
  Status Bool(const json& obj, const char* key, bool fallback, const std::string& path,
              bool* out) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return *out = fallback, Status();
    if (!it->is_boolean()) return Error(path + "." + key + ": expected true or false");
    *out = it->get<bool>();
    return {};
  }
  // Every key of obj is one of `known`.
  Status Keys(const json& obj, std::initializer_list<const char*> known,
              const std::string& path) const {
    for (const auto& [key, value] : obj.items()) {
      bool ok = false;
      for (const char* k : known) ok = ok || key == k;
      if (!ok) return Error(path + ": unknown option " + Quote(key));
    }
    return {};
  }

 private:
  std::string where_;
};

void Put32(std::string* out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}

Result<format::PreTokenizer> ReadPreTokenizer(const json& j, const Reader& r) {
  const auto bad = [&](const std::string& what) { return r.Error("pre_tokenizer: " + what); };
  if (!j.is_object()) return bad("expected an object (byte-level BPE needs one)");
  std::string type;
  MOBILELLM_RETURN_IF_ERROR(r.String(j, "type", "pre_tokenizer", &type));
  if (type == "ByteLevel") {  // GPT-2: the byte-level pre-tokenizer with its own regex
    MOBILELLM_RETURN_IF_ERROR(
        r.Keys(j, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, "pre_tokenizer"));
    bool prefix = false, use_regex = true;
    MOBILELLM_RETURN_IF_ERROR(r.Bool(j, "add_prefix_space", true, "pre_tokenizer", &prefix));
    MOBILELLM_RETURN_IF_ERROR(r.Bool(j, "use_regex", true, "pre_tokenizer", &use_regex));
    if (prefix) return bad("ByteLevel add_prefix_space = true is not supported");
    if (!use_regex)
      return bad("ByteLevel without a regex (and no Split before it) is not supported");
    return format::PreTokenizer::kGpt2;
  }
  if (type != "Sequence") return bad("type " + Quote(type) + " is not supported");
  MOBILELLM_RETURN_IF_ERROR(r.Keys(j, {"type", "pretokenizers"}, "pre_tokenizer"));
  const auto seq = j.find("pretokenizers");
  if (seq == j.end() || !seq->is_array() || seq->size() != 2 || !(*seq)[0].is_object() ||
      !(*seq)[1].is_object())
    return bad("expected Sequence [Split, ByteLevel]");
  const json& split = (*seq)[0];
  const json& bl = (*seq)[1];
  std::string split_type, bl_type, behavior, pattern;
  MOBILELLM_RETURN_IF_ERROR(r.String(split, "type", "pre_tokenizer[0]", &split_type));
  MOBILELLM_RETURN_IF_ERROR(r.String(bl, "type", "pre_tokenizer[1]", &bl_type));
  if (split_type != "Split" || bl_type != "ByteLevel")
    return bad("expected Sequence [Split, ByteLevel], found [" + Quote(split_type) + ", " +
               Quote(bl_type) + "]");
  MOBILELLM_RETURN_IF_ERROR(
      r.Keys(split, {"type", "pattern", "behavior", "invert"}, "pre_tokenizer[0]"));
  MOBILELLM_RETURN_IF_ERROR(r.String(split, "behavior", "pre_tokenizer[0]", &behavior));
  if (behavior != "Isolated") return bad("Split behavior " + Quote(behavior) + " is not supported");
  MOBILELLM_RETURN_IF_ERROR(r.Only(split, "invert", false, "pre_tokenizer[0]"));
  const auto pat = split.find("pattern");
  if (pat == split.end() || !pat->is_object() || !pat->contains("Regex"))
    return bad("Split pattern: expected {\"Regex\": ...}");
  MOBILELLM_RETURN_IF_ERROR(r.String(*pat, "Regex", "pre_tokenizer[0].pattern", &pattern));
  format::PreTokenizer kind;
  if (pattern == kLlama3Pattern)
    kind = format::PreTokenizer::kLlama3;
  else if (pattern == kGpt2Pattern)
    kind = format::PreTokenizer::kGpt2;
  else
    return bad("unknown Split pattern " + Quote(pattern) + " (known: Llama-3's, GPT-2's)");
  MOBILELLM_RETURN_IF_ERROR(
      r.Keys(bl, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, "pre_tokenizer[1]"));
  bool prefix = false, use_regex = true;
  MOBILELLM_RETURN_IF_ERROR(r.Bool(bl, "add_prefix_space", true, "pre_tokenizer[1]", &prefix));
  MOBILELLM_RETURN_IF_ERROR(r.Bool(bl, "use_regex", true, "pre_tokenizer[1]", &use_regex));
  if (prefix) return bad("ByteLevel add_prefix_space = true is not supported");
  if (use_regex) return bad("ByteLevel use_regex = true after a Split is not supported");
  return kind;
}

}  // namespace

Result<std::string> TokenizerJsonToBlob(std::string_view text, const std::string& where) {
  const Reader r(where);
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return r.Error("not a tokenizer.json (invalid JSON)");

  // The pipeline around the model.
  for (const char* key : {"truncation", "padding"})
    if (j.contains(key) && !j[key].is_null())
      return r.Error(std::string(key) + " is set: not supported (it would change the ids)");
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const json& n = j["normalizer"];
    const std::string type = n.is_object() && n.contains("type") && n["type"].is_string()
                                 ? n["type"].get<std::string>()
                                 : n.dump().substr(0, 80);
    return r.Error("normalizer " + Quote(type) + " is not supported (byte-level BPE has none)");
  }
  const auto pre = j.find("pre_tokenizer");
  if (pre == j.end()) return r.Error("no pre_tokenizer");
  auto pre_tokenizer = ReadPreTokenizer(*pre, r);
  if (!pre_tokenizer.ok()) return pre_tokenizer.status();
  const auto dec = j.find("decoder");
  std::string dec_type;
  if (dec == j.end() || !dec->is_object() || !r.String(*dec, "type", "decoder", &dec_type).ok() ||
      dec_type != "ByteLevel")
    return r.Error("decoder: expected ByteLevel, found " +
                   (dec == j.end() ? std::string("none") : dec->dump().substr(0, 80)));

  // The model.
  const auto m = j.find("model");
  if (m == j.end() || !m->is_object()) return r.Error("no model");
  std::string type;
  MOBILELLM_RETURN_IF_ERROR(r.String(*m, "type", "model", &type));
  if (type != "BPE") return r.Error("model type " + Quote(type) + " is not supported (only BPE)");
  MOBILELLM_RETURN_IF_ERROR(
      r.Keys(*m,
             {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
              "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"},
             "model"));
  MOBILELLM_RETURN_IF_ERROR(r.Only(*m, "dropout", 0.0, "model"));
  MOBILELLM_RETURN_IF_ERROR(r.Only(*m, "unk_token", json(), "model"));
  MOBILELLM_RETURN_IF_ERROR(r.Only(*m, "continuing_subword_prefix", "", "model"));
  MOBILELLM_RETURN_IF_ERROR(r.Only(*m, "end_of_word_suffix", "", "model"));
  MOBILELLM_RETURN_IF_ERROR(r.Only(*m, "byte_fallback", false, "model"));
  bool ignore_merges = false, fuse_unk = false;
  MOBILELLM_RETURN_IF_ERROR(r.Bool(*m, "fuse_unk", false, "model", &fuse_unk));  // type check only
  MOBILELLM_RETURN_IF_ERROR(r.Bool(*m, "ignore_merges", false, "model", &ignore_merges));

  // Vocabulary: id -> bytes.
  constexpr uint32_t kMaxTokens = 1u << 22;
  const auto vocab = m->find("vocab");
  if (vocab == m->end() || !vocab->is_object()) return r.Error("model.vocab: expected an object");
  std::vector<std::string> tokens;
  std::vector<bool> defined, added;
  const auto define = [&](int64_t id, const std::string& what) -> Status {
    if (id < 0 || id >= kMaxTokens)
      return r.Error(what + ": id " + std::to_string(id) + " out of range");
    if (size_t(id) >= tokens.size()) {
      tokens.resize(size_t(id) + 1), defined.resize(size_t(id) + 1), added.resize(size_t(id) + 1);
    }
    return {};
  };
  std::unordered_map<std::string, uint32_t> id_of;  // vocabulary strings as written
  std::string bytes;
  for (const auto& [key, value] : vocab->items()) {
    const std::string what = "model.vocab[" + Quote(key) + "]";
    if (!value.is_number_integer()) return r.Error(what + ": expected an integer id");
    const int64_t id = value.get<int64_t>();
    MOBILELLM_RETURN_IF_ERROR(define(id, what));
    if (defined[id]) return r.Error(what + ": id " + std::to_string(id) + " is used twice");
    if (key.empty() || !DecodeByteLevel(key, &bytes))
      return r.Error(what + ": not a byte-level token (a character outside GPT-2's byte alphabet)");
    tokens[id] = bytes, defined[id] = true;
    id_of.emplace(key, uint32_t(id));
  }

  // Added tokens: their content, raw.
  std::vector<std::pair<uint32_t, uint32_t>> added_list;  // id, flags
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const json& list = j["added_tokens"];
    if (!list.is_array()) return r.Error("added_tokens: expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const json& a = list[i];
      const std::string path = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) return r.Error(path + ": expected an object");
      MOBILELLM_RETURN_IF_ERROR(r.Keys(
          a, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}, path));
      std::string content;
      MOBILELLM_RETURN_IF_ERROR(r.String(a, "content", path, &content));
      const auto id_it = a.find("id");
      if (id_it == a.end() || !id_it->is_number_integer())
        return r.Error(path + ".id: expected an integer");
      const int64_t id = id_it->get<int64_t>();
      const std::string what = path + " " + Quote(content);
      bool special = false, flag = false;
      MOBILELLM_RETURN_IF_ERROR(r.Bool(a, "special", false, path, &special));
      MOBILELLM_RETURN_IF_ERROR(r.Bool(a, "normalized", false, path, &flag));  // no normalizer
      for (const char* key : {"single_word", "lstrip", "rstrip"}) {
        MOBILELLM_RETURN_IF_ERROR(r.Bool(a, key, false, path, &flag));
        if (flag) return r.Error(what + ": " + key + " = true is not supported");
      }
      if (content.empty() || content.size() > format::kMaxAddedTokenBytes)
        return r.Error(what + ": content must have 1.." +
                       std::to_string(format::kMaxAddedTokenBytes) + " bytes");
      MOBILELLM_RETURN_IF_ERROR(define(id, what));
      if (added[id]) return r.Error(what + ": id " + std::to_string(id) + " is added twice");
      if (defined[id] && tokens[id] != content)
        return r.Error(what + ": id " + std::to_string(id) + " is also the vocabulary token " +
                       Quote(tokens[id]));
      tokens[id] = content, defined[id] = added[id] = true;
      added_list.emplace_back(uint32_t(id), special ? format::kBpeAddedSpecial : 0u);
    }
  }
  for (size_t id = 0; id < tokens.size(); ++id)
    if (!defined[id])
      return r.Error("id " + std::to_string(id) + " is neither in model.vocab nor added_tokens");
  if (tokens.size() < 256) return r.Error("fewer than 256 tokens: not a byte-level vocabulary");

  // Merges: "a b" or ["a", "b"], in rank order.
  const auto merges = m->find("merges");
  if (merges == m->end() || !merges->is_array()) return r.Error("model.merges: expected an array");
  std::string merge_bytes;
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const json& e = (*merges)[rank];
    const std::string path = "model.merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        return r.Error(path + " " + Quote(s) + ": expected two tokens separated by a space");
      left = s.substr(0, space), right = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      left = e[0].get<std::string>(), right = e[1].get<std::string>();
    } else {
      return r.Error(path + ": expected \"a b\" or [\"a\", \"b\"]");
    }
    uint32_t ids[3];
    const std::string parts[3] = {left, right, left + right};
    for (int k = 0; k < 3; ++k) {
      const auto it = id_of.find(parts[k]);
      if (it == id_of.end() || added[it->second])
        return r.Error(path + ": " + Quote(parts[k]) + " is not in model.vocab");
      ids[k] = it->second;
    }
    for (uint32_t id : ids) Put32(&merge_bytes, id);
  }

  // The blob (format.h).
  std::string blob(format::kBpeMagic, 4);
  std::string text_bytes;
  for (const std::string& t : tokens) text_bytes += t;
  if (text_bytes.size() > (1u << 30)) return r.Error("the vocabulary's text is over 1 GiB");
  Put32(&blob, format::kBpeVersion);
  Put32(&blob, uint32_t(*pre_tokenizer));
  Put32(&blob, ignore_merges ? format::kBpeIgnoreMerges : 0u);
  Put32(&blob, uint32_t(tokens.size()));
  Put32(&blob, uint32_t(merges->size()));
  Put32(&blob, uint32_t(added_list.size()));
  Put32(&blob, uint32_t(text_bytes.size()));
  uint32_t end = 0;
  for (const std::string& t : tokens) Put32(&blob, end += uint32_t(t.size()));
  blob += merge_bytes;
  for (const auto& [id, flags] : added_list) Put32(&blob, id), Put32(&blob, flags);
  blob += text_bytes;
  // What the engine would refuse is refused here, in its words (e.g. a byte with no token of its
  // own), so that every blob this returns loads.
  const auto engine = Tokenizer::Parse(format::TokenizerKind::kByteLevelBpe, blob);
  if (!engine.ok()) return r.Error(engine.status().message());
  return blob;
}

Result<TokenizerData> ReadTokenizerFile(const std::string& path) {
  TokenizerData t;
  MOBILELLM_RETURN_IF_ERROR(ReadFile(path, &t.bytes));
  const size_t first = t.bytes.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || t.bytes[first] != '{') return t;  // a SentencePiece model
  auto blob = TokenizerJsonToBlob(t.bytes, path);
  if (!blob.ok()) return blob.status();
  t.kind = format::TokenizerKind::kByteLevelBpe;
  t.bytes = std::move(blob).value();
  return t;
}

}  // namespace mobilellm::convert
