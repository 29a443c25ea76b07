// Tokenizer: one interface over the two kinds (tokenizer.h), and SentencePiece BPE read straight
// from the serialized ModelProto (sentencepiece.h).
#include "mobilellm/tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <queue>

#include "byte_level_bpe.h"
#include "mobilellm/untrusted.h"
#include "sentencepiece.h"
#include "utf8.h"

namespace mobilellm {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁"
using utf8::kReplacement;
constexpr size_t kMaxPieces = 1 << 22;  // ModelConfig's vocab_size limit

// ---- a protobuf reader: just what ModelProto needs ----------------------------------------------

class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}
  bool done() const { return p_ == end_ || failed_; }
  bool failed() const { return failed_; }

  // The next field: its number and wire type; false at the end or on malformed input.
  bool Next(uint32_t* field, uint32_t* wire) {
    if (done()) return false;
    const uint64_t tag = Varint();
    *field = uint32_t(tag >> 3), *wire = uint32_t(tag & 7);
    return !failed_;
  }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) break;
      const uint8_t b = uint8_t(*p_++);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    failed_ = true;
    return 0;
  }
  std::string_view Bytes() {
    const uint64_t n = Varint();
    if (failed_ || !InRange(0, n, uint64_t(end_ - p_))) return failed_ = true, std::string_view();
    const std::string_view s(p_, size_t(n));
    p_ += n;
    return s;
  }
  float Fixed32() {
    if (end_ - p_ < 4) return failed_ = true, 0.0f;
    float f;
    std::memcpy(&f, p_, 4);  // little-endian on every target we build for
    p_ += 4;
    return f;
  }
  void Skip(uint32_t wire) {
    switch (wire) {
      case 0:
        Varint();
        break;
      case 1:
        if (end_ - p_ < 8)
          failed_ = true;
        else
          p_ += 8;
        break;
      case 2:
        Bytes();
        break;
      case 5:
        Fixed32();
        break;
      default:  // groups (3, 4) are not used by sentencepiece
        failed_ = true;
    }
  }

 private:
  const char* p_;
  const char* end_;
  bool failed_ = false;
};

// Bytes as text, appended to `out`: each byte that does not start a valid UTF-8 character
// becomes U+FFFD.
void AppendValidUtf8(std::string_view bytes, std::string* out) {
  while (!bytes.empty()) {
    const size_t n = utf8::CharLen(bytes);
    if (n == 0) {
      out->append(kReplacement);
      bytes.remove_prefix(1);
    } else {
      out->append(bytes.substr(0, n));
      bytes.remove_prefix(n);
    }
  }
}

// The byte a byte piece stands for ("<0x0A>" -> 10), or -1 if `piece` is not of that form.
int ByteOfPiece(std::string_view piece) {
  const auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string ReplaceSpaceSymbol(std::string_view piece) {
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      out += ' ', i += kSpaceSymbol.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

}  // namespace

Result<SentencePiece> SentencePiece::Parse(std::string_view proto) {
  SentencePiece t;
  std::string normalizer_name, charsmap, unk_surface;
  int model_type = 1;  // proto default: UNIGRAM
  ProtoReader r(proto);
  uint32_t field, wire;
  while (r.Next(&field, &wire)) {
    if (field == 1 && wire == 2) {  // ModelProto.pieces
      ProtoReader p(r.Bytes());
      Piece piece;
      uint64_t type = kNormal;  // checked before it becomes a Type
      while (p.Next(&field, &wire)) {
        if (field == 1 && wire == 2)
          piece.text = std::string(p.Bytes());
        else if (field == 2 && wire == 5)
          piece.score = p.Fixed32();
        else if (field == 3 && wire == 0)
          type = p.Varint();
        else
          p.Skip(wire);
      }
      if (p.failed()) return Status::Error("malformed piece " + std::to_string(t.pieces_.size()));
      if (type < kNormal || type > kByte)
        return Status::Error("piece " + std::to_string(t.pieces_.size()) + " has unknown type " +
                             std::to_string(type));
      if (t.pieces_.size() >= kMaxPieces)
        return Status::Error("more than " + std::to_string(kMaxPieces) + " pieces");
      piece.type = Type(type);
      t.pieces_.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {  // trainer_spec
      ProtoReader p(r.Bytes());
      while (p.Next(&field, &wire)) {
        if (field == 3 && wire == 0)
          model_type = int(p.Varint());
        else if (field == 35 && wire == 0)
          t.byte_fallback_ = p.Varint() != 0;
        else if (field == 44 && wire == 2)
          unk_surface = std::string(p.Bytes());
        else
          p.Skip(wire);
      }
      if (p.failed()) return Status::Error("malformed trainer_spec");
    } else if (field == 3 && wire == 2) {  // normalizer_spec
      ProtoReader p(r.Bytes());
      while (p.Next(&field, &wire)) {
        if (field == 1 && wire == 2)
          normalizer_name = std::string(p.Bytes());
        else if (field == 2 && wire == 2)
          charsmap = std::string(p.Bytes());
        else if (field == 3 && wire == 0)
          t.add_dummy_prefix_ = p.Varint() != 0;
        else if (field == 4 && wire == 0)
          t.remove_extra_whitespaces_ = p.Varint() != 0;
        else if (field == 5 && wire == 0)
          t.escape_whitespaces_ = p.Varint() != 0;
        else
          p.Skip(wire);
      }
      if (p.failed()) return Status::Error("malformed normalizer_spec");
    } else {
      r.Skip(wire);
    }
  }
  if (r.failed()) return Status::Error("not a SentencePiece model (malformed protobuf)");
  if (t.pieces_.empty()) return Status::Error("not a SentencePiece model (no pieces)");
  if (model_type != 2)
    return Status::Error("SentencePiece model type " + std::to_string(model_type) +
                         " is not supported (MobileLLM's tokenizer is BPE, type 2)");
  if (!charsmap.empty())
    return Status::Error("SentencePiece normalization '" + normalizer_name +
                         "' is not supported (MobileLLM's tokenizer uses 'identity')");
  t.unk_surface_ = unk_surface.empty() ? " \xE2\x81\x87 " : unk_surface;

  bool have_unk = false;
  std::fill(std::begin(t.byte_ids_), std::end(t.byte_ids_), -1);
  for (int id = 0; id < t.size(); ++id) {
    const Piece& p = t.pieces_[id];
    const bool vocab = p.type == kNormal || p.type == kUserDefined || p.type == kUnused;
    if (!(vocab ? t.vocab_ : t.reserved_).emplace(p.text, id).second)
      return Status::Error("piece " + std::to_string(id) + " '" + Printable(p.text) +
                           "' appears twice");
    if (p.type == kUserDefined && !p.text.empty()) {
      uint32_t node = 0;
      for (unsigned char c : p.text) {
        const auto [it, added] =
            t.user_trie_.emplace(uint64_t(node) << 8 | c, uint32_t(t.user_end_.size()));
        if (added) t.user_end_.push_back(false);
        node = it->second;
      }
      t.user_end_[node] = true;
    }
    if (p.type == kUnknown) t.unk_id_ = id, have_unk = true;
    if (p.type == kByte) {
      const int byte = ByteOfPiece(p.text);
      if (byte < 0)
        return Status::Error("byte piece " + std::to_string(id) + " '" + Printable(p.text) +
                             "' is not of the form <0xXX>");
      t.byte_ids_[byte] = id;
    }
  }
  if (!have_unk) return Status::Error("not a SentencePiece model (no <unk> piece)");
  if (t.byte_fallback_ && std::count(std::begin(t.byte_ids_), std::end(t.byte_ids_), -1) != 0)
    return Status::Error("byte fallback is on but some of the 256 <0xXX> pieces are missing");
  return t;
}

size_t SentencePiece::UserDefinedPrefix(std::string_view s) const {
  size_t longest = 0;
  uint32_t node = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto it = user_trie_.find(uint64_t(node) << 8 | uint8_t(s[i]));
    if (it == user_trie_.end()) break;
    node = it->second;
    if (user_end_[node]) longest = i + 1;
  }
  return longest;
}

int SentencePiece::PieceId(std::string_view piece) const {
  const std::string key(piece);
  if (auto it = reserved_.find(key); it != reserved_.end()) return it->second;
  if (auto it = vocab_.find(key); it != vocab_.end()) return it->second;
  return -1;
}

void SentencePiece::Emit(const std::string& whole, const Splits& splits,
                         std::vector<int>* ids) const {
  // Depth-first, left part first; a stack, not recursion: a chain of unused pieces can be as long
  // as the prompt.
  std::vector<const std::string*> todo = {&whole};
  while (!todo.empty()) {
    const std::string& piece = *todo.back();
    todo.pop_back();
    const int id = PieceId(piece);
    if (id >= 0 && pieces_[id].type == kUnused) {
      if (auto it = splits.find(piece); it != splits.end()) {
        todo.push_back(&it->second.second);
        todo.push_back(&it->second.first);
        continue;
      }
    }
    if (id >= 0 && pieces_[id].type != kUnknown) {
      ids->push_back(id);
    } else if (byte_fallback_) {
      for (unsigned char c : piece) ids->push_back(byte_ids_[c]);
    } else if (ids->empty() || ids->back() != unk_id_) {  // a run of unknowns is one <unk>
      ids->push_back(unk_id_);
    }
  }
}

std::vector<int> SentencePiece::Encode(std::string_view text, bool continuation) const {
  // Identity normalization: invalid UTF-8 bytes become U+FFFD, spaces become "▁", a dummy "▁"
  // goes in front, and (when the model asks) runs of spaces collapse.
  std::string norm;
  const std::string space = escape_whitespaces_ ? std::string(kSpaceSymbol) : std::string(" ");
  if (remove_extra_whitespaces_ && !continuation)
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.empty()) return {};
  if (add_dummy_prefix_ && !continuation) norm += space;
  bool prev_space = remove_extra_whitespaces_ && !continuation;
  while (!text.empty()) {
    const size_t n = utf8::CharLen(text);
    if (n == 0) {
      norm += kReplacement;
      prev_space = false;
      text.remove_prefix(1);
      continue;
    }
    if (text[0] == ' ') {
      if (!(remove_extra_whitespaces_ && prev_space)) norm += space;
      prev_space = remove_extra_whitespaces_;
    } else {
      norm.append(text.substr(0, n));
      prev_space = false;
    }
    text.remove_prefix(n);
  }
  if (remove_extra_whitespaces_)
    while (norm.size() >= space.size() &&
           norm.compare(norm.size() - space.size(), space.size(), space) == 0)
      norm.resize(norm.size() - space.size());

  // One symbol per character (user-defined pieces whole and frozen), in a linked list.
  struct Symbol {
    int prev, next;
    size_t begin, len;
    bool frozen;
  };
  std::vector<Symbol> sym;
  for (size_t i = 0; i < norm.size();) {
    size_t n = UserDefinedPrefix(std::string_view(norm).substr(i));
    const bool frozen = n > 0;
    if (n == 0) n = std::max<size_t>(1, utf8::CharLen(std::string_view(norm).substr(i)));
    const int k = int(sym.size());
    sym.push_back({k - 1, k + 1, i, n, frozen});
    i += n;
  }
  if (sym.empty()) return {};
  sym.back().next = -1;

  // Merge the adjacent pair that forms the highest-scoring vocabulary piece, leftmost first,
  // until no pair forms one. Stale queue entries are recognised by their length.
  struct Pair {
    int left, right;
    float score;
    size_t len;
  };
  const auto worse = [](const Pair& a, const Pair& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
  Splits splits;  // how each unused piece was formed, to take it apart again
  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0 || sym[left].frozen || sym[right].frozen) return;
    const size_t len = sym[left].len + sym[right].len;
    const std::string piece = norm.substr(sym[left].begin, len);
    const auto it = vocab_.find(piece);
    if (it == vocab_.end()) return;
    agenda.push({left, right, pieces_[it->second].score, len});
    if (pieces_[it->second].type == kUnused)
      splits[piece] = {norm.substr(sym[left].begin, sym[left].len),
                       norm.substr(sym[right].begin, sym[right].len)};
  };
  for (int i = 1; i < int(sym.size()); ++i) consider(i - 1, i);
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol &l = sym[top.left], &r = sym[top.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = top.left;
    consider(l.prev, top.left);
    consider(top.left, l.next);
  }

  std::vector<int> ids;
  for (int i = 0; i >= 0; i = sym[i].next)
    Emit(norm.substr(sym[i].begin, sym[i].len), splits, &ids);
  return ids;
}

std::string SentencePiece::PieceBytes(int id) const {
  if (id < 0 || id >= size()) return "";
  const Piece& p = pieces_[id];
  switch (p.type) {
    case kControl:
      return "";
    case kUnknown:
      return unk_surface_;
    case kByte:
      return std::string(1, char(ByteOfPiece(p.text)));
    default:
      return ReplaceSpaceSymbol(p.text);
  }
}

std::string SentencePiece::Decode(const std::vector<int>& ids) const {
  std::string text, bytes;  // bytes: a run of byte pieces, validated as UTF-8 when it ends
  // The dummy prefix: the first piece that starts with "▁" loses it. With
  // remove_extra_whitespaces, every leading "▁" goes until some text is out.
  bool at_start = true;
  const auto flush_bytes = [&] {
    AppendValidUtf8(bytes, &text);
    if (!bytes.empty()) at_start = false;
    bytes.clear();
  };
  for (int id : ids) {
    if (id < 0 || id >= size()) continue;
    const Piece& p = pieces_[id];
    if (p.type == kByte) {
      bytes += PieceBytes(id);
      continue;
    }
    flush_bytes();
    if (p.type == kControl || p.type == kUnknown) {
      text += PieceBytes(id);
      if (p.type == kUnknown) at_start = false;
      continue;
    }
    std::string_view piece = p.text;
    bool consumed = false;
    if (at_start && (add_dummy_prefix_ || remove_extra_whitespaces_) &&
        piece.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
      piece.remove_prefix(kSpaceSymbol.size());
      consumed = !remove_extra_whitespaces_;
    }
    const std::string surface = ReplaceSpaceSymbol(piece);
    text += surface;
    if (!surface.empty() || consumed) at_start = false;
  }
  flush_bytes();
  return text;
}

}  // namespace mobilellm

// ---- Tokenizer: the one interface -----------------------------------------------------------

namespace mobilellm {

Result<Tokenizer> Tokenizer::Parse(format::TokenizerKind kind, std::string_view bytes) {
  Tokenizer t;
  switch (kind) {
    case format::TokenizerKind::kSentencePiece: {
      auto spm = SentencePiece::Parse(bytes);
      if (!spm.ok()) return spm.status();
      t.spm_ = std::make_shared<const SentencePiece>(std::move(spm).value());
      return t;
    }
    case format::TokenizerKind::kByteLevelBpe: {
      auto bpe = ByteLevelBpe::Parse(bytes);
      if (!bpe.ok()) return bpe.status();
      t.bpe_ = std::make_shared<const ByteLevelBpe>(std::move(bpe).value());
      return t;
    }
  }
  return Status::Error("unknown tokenizer kind " + std::to_string(uint32_t(kind)));
}

format::TokenizerKind Tokenizer::kind() const {
  return bpe_ ? format::TokenizerKind::kByteLevelBpe : format::TokenizerKind::kSentencePiece;
}

std::vector<int> Tokenizer::Encode(std::string_view text, bool continuation) const {
  return bpe_ ? bpe_->Encode(text) : spm_->Encode(text, continuation);
}

std::string Tokenizer::Decode(const std::vector<int>& ids) const {
  return bpe_ ? bpe_->Decode(ids) : spm_->Decode(ids);
}

void Tokenizer::AppendText(std::string_view bytes, std::string* out) const {
  if (bpe_)
    utf8::AppendLossy(bytes, out);
  else
    AppendValidUtf8(bytes, out);
}

std::string Tokenizer::PieceBytes(int id) const {
  return bpe_ ? std::string(bpe_->PieceBytes(id)) : spm_->PieceBytes(id);
}

int Tokenizer::size() const {
  return bpe_ ? bpe_->size() : spm_->size();
}

int Tokenizer::TokenId(std::string_view piece) const {
  return bpe_ ? bpe_->TokenId(piece) : spm_->PieceId(piece);
}

std::string Tokenizer::Summary() const {
  if (!bpe_) return "sentencepiece, " + std::to_string(size()) + " pieces";
  int added = 0, special = 0;
  for (int id = 0; id < size(); ++id) added += bpe_->IsAdded(id), special += bpe_->IsSpecial(id);
  return std::string("byte-level BPE (") +
         (bpe_->pre_tokenizer() == format::PreTokenizer::kLlama3 ? "Llama-3" : "GPT-2") +
         " pre-tokenizer), " + std::to_string(size()) + " tokens, " + std::to_string(added) +
         " added (" + std::to_string(special) + " special)";
}

bool Tokenizer::IsSpecial(int id) const {
  if (bpe_) return bpe_->IsSpecial(id);
  return id >= 0 && id < spm_->size() && spm_->IsControl(id);
}

std::string Tokenizer::SpecialText(int id) const {
  if (!IsSpecial(id)) return "";
  return bpe_ ? std::string(bpe_->PieceBytes(id)) : spm_->piece(id);
}

}  // namespace mobilellm
