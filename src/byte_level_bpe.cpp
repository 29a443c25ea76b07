// Byte-level BPE: the blob reader, the pre-tokenizers, the merge loop and decoding (see
// byte_level_bpe.h).
#include "byte_level_bpe.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include "mobilellm/untrusted.h"
#include "utf8.h"

namespace mobilellm {

namespace {

struct UnicodeRange {
  uint32_t first, last;
  uint8_t bits;
};
#include "unicode_tables.inc"

// Character classes of the pre-tokenizer patterns (the bits of unicode_tables.inc).
enum : uint8_t { kLetter = 1, kNumber = 2, kWhiteSpace = 4 };

// The class bits of a code point: ASCII from a table, the rest by binary search.
uint8_t ClassOf(uint32_t cp) {
  static const auto ascii = [] {
    struct Table {
      uint8_t bits[128] = {};
    } t;
    for (const UnicodeRange& r : kUnicodeRanges)
      for (uint32_t c = r.first; c <= r.last && c < 128; ++c) t.bits[c] = r.bits;
    return t;
  }();
  if (cp < 128) return ascii.bits[cp];
  size_t lo = 0, hi = std::size(kUnicodeRanges);
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (kUnicodeRanges[mid].last < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < std::size(kUnicodeRanges) && kUnicodeRanges[lo].first <= cp ? kUnicodeRanges[lo].bits
                                                                          : 0;
}

// FNV-1a: hashes token bytes and merge pairs for the open-addressing tables.
uint64_t Hash(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}
uint64_t PairHash(uint32_t left, uint32_t right) {
  uint64_t h = (uint64_t(left) << 32 | right) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 31);
}
size_t TableSize(size_t n) {
  size_t size = 16;
  while (size < 2 * n) size *= 2;
  return size;
}

uint32_t Load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // little-endian on every target we build for
  return v;
}

uint32_t AsciiLower(uint32_t c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

}  // namespace

Result<ByteLevelBpe> ByteLevelBpe::Parse(std::string_view blob) {
  using format::BpeHeader;
  const auto fail = [](const std::string& what) {
    return Status::Error("byte-level BPE tokenizer: " + what);
  };
  if (blob.size() < sizeof(BpeHeader))
    return fail("truncated: " + std::to_string(blob.size()) + " bytes, header needs " +
                std::to_string(sizeof(BpeHeader)));
  BpeHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  if (std::memcmp(h.magic, format::kBpeMagic, 4) != 0) return fail("bad magic: expected 'BBPE'");
  if (h.version != format::kBpeVersion)
    return fail("version " + std::to_string(h.version) + ": this build reads version " +
                std::to_string(format::kBpeVersion));
  if (h.pre_tokenizer != uint32_t(format::PreTokenizer::kLlama3) &&
      h.pre_tokenizer != uint32_t(format::PreTokenizer::kGpt2))
    return fail("unknown pre-tokenizer " + std::to_string(h.pre_tokenizer));
  if ((h.flags & ~uint32_t(format::kBpeIgnoreMerges)) != 0)
    return fail("unknown flags " + std::to_string(h.flags));
  if (h.n_tokens < 256 || h.n_tokens > (1u << 22) || h.n_merges > (1u << 24) ||
      h.n_added > h.n_tokens || h.text_bytes > (1u << 30))
    return fail("implausible sizes: " + std::to_string(h.n_tokens) + " tokens, " +
                std::to_string(h.n_merges) + " merges, " + std::to_string(h.n_added) + " added, " +
                std::to_string(h.text_bytes) + " bytes of text");
  // The sections, one after another, must end exactly at the blob's end.
  const uint64_t ends_at = sizeof(BpeHeader);
  uint64_t merges_at = 0, added_at = 0, text_at = 0, end = 0;
  if (!RangeWithin(ends_at, h.n_tokens, 4, blob.size(), &merges_at) ||
      !RangeWithin(merges_at, h.n_merges, sizeof(format::BpeMerge), blob.size(), &added_at) ||
      !RangeWithin(added_at, h.n_added, sizeof(format::BpeAddedToken), blob.size(), &text_at) ||
      !RangeWithin(text_at, h.text_bytes, 1, blob.size(), &end) || end != blob.size())
    return fail("size: the header's counts (" + std::to_string(h.n_tokens) + " tokens, " +
                std::to_string(h.n_merges) + " merges, " + std::to_string(h.n_added) + " added, " +
                std::to_string(h.text_bytes) + " bytes of text) do not fill the " +
                std::to_string(blob.size()) + " bytes");

  ByteLevelBpe t;
  t.pre_tokenizer_ = format::PreTokenizer(h.pre_tokenizer);
  t.ignore_merges_ = (h.flags & format::kBpeIgnoreMerges) != 0;
  t.n_tokens_ = h.n_tokens;
  t.text_.assign(blob.substr(text_at));
  t.token_begin_.resize(h.n_tokens + 1);
  t.token_begin_[0] = 0;
  for (uint32_t i = 0; i < h.n_tokens; ++i) {
    const uint32_t end = Load32(blob.data() + ends_at + 4ull * i);
    if (end <= t.token_begin_[i] || end > h.text_bytes)
      return fail("token " + std::to_string(i) + " is empty or ends outside the text (at " +
                  std::to_string(end) + ")");
    t.token_begin_[i + 1] = end;
  }
  if (t.token_begin_[h.n_tokens] != h.text_bytes)
    return fail("the tokens cover " + std::to_string(t.token_begin_[h.n_tokens]) + " of " +
                std::to_string(h.text_bytes) + " bytes of text");

  // Added tokens: flags, then the trie (which also finds duplicates).
  t.added_flags_.assign(h.n_tokens, kNotAdded);
  t.trie_.emplace_back();
  std::vector<std::vector<std::pair<uint8_t, uint32_t>>> children(1);
  for (uint32_t i = 0; i < h.n_added; ++i) {
    const char* p = blob.data() + added_at + uint64_t(sizeof(format::BpeAddedToken)) * i;
    const uint32_t id = Load32(p), flags = Load32(p + 4);
    const std::string where = "added token #" + std::to_string(i);
    if (id >= h.n_tokens) return fail(where + ": id " + std::to_string(id) + " out of range");
    if ((flags & ~uint32_t(format::kBpeAddedSpecial)) != 0)
      return fail(where + ": unknown flags " + std::to_string(flags));
    if (t.added_flags_[id] != kNotAdded)
      return fail(where + ": id " + std::to_string(id) + " is added twice");
    t.added_flags_[id] = flags;
    const std::string_view content = t.PieceBytes(int(id));
    if (content.size() > format::kMaxAddedTokenBytes)
      return fail(where + ": " + std::to_string(content.size()) + " bytes, more than " +
                  std::to_string(format::kMaxAddedTokenBytes));
    for (size_t k = 0; k < content.size();) {
      const size_t n = utf8::CharLen(content.substr(k));
      if (n == 0) return fail(where + ": content is not valid UTF-8");
      k += n;
    }
    uint32_t node = 0;
    for (const char c : content) {
      auto& edges = children[node];
      const auto it = std::find_if(edges.begin(), edges.end(),
                                   [&](const auto& e) { return e.first == uint8_t(c); });
      if (it != edges.end()) {
        node = it->second;
        continue;
      }
      edges.emplace_back(uint8_t(c), uint32_t(t.trie_.size()));
      node = uint32_t(t.trie_.size());
      t.trie_.emplace_back();
      children.emplace_back();
    }
    if (t.trie_[node].id >= 0)
      return fail(where + ": content equals token " + std::to_string(t.trie_[node].id) + "'s");
    t.trie_[node].id = int32_t(id);
    t.added_first_byte_[uint8_t(content[0])] = true;
  }
  for (size_t node = 0; node < children.size(); ++node) {
    auto& edges = children[node];
    std::sort(edges.begin(), edges.end());
    t.trie_[node].first_edge = uint32_t(t.trie_edges_.size());
    t.trie_[node].n_edges = uint32_t(edges.size());
    for (const auto& [byte, child] : edges) t.trie_edges_.push_back({byte, child});
  }

  // Vocabulary: bytes -> id, and the single bytes.
  std::fill(std::begin(t.byte_ids_), std::end(t.byte_ids_), kEmpty);
  t.vocab_slots_.assign(TableSize(h.n_tokens), kEmpty);
  const size_t vmask = t.vocab_slots_.size() - 1;
  for (uint32_t id = 0; id < h.n_tokens; ++id) {
    if (t.added_flags_[id] != kNotAdded) continue;
    const std::string_view bytes = t.PieceBytes(int(id));
    if (bytes.size() == 1 && t.byte_ids_[uint8_t(bytes[0])] == kEmpty)
      t.byte_ids_[uint8_t(bytes[0])] = id;
    size_t slot = Hash(bytes.data(), bytes.size()) & vmask;
    while (t.vocab_slots_[slot] != kEmpty && t.PieceBytes(int(t.vocab_slots_[slot])) != bytes)
      slot = (slot + 1) & vmask;
    if (t.vocab_slots_[slot] == kEmpty) t.vocab_slots_[slot] = id;  // else: first id wins
  }
  for (int b = 0; b < 256; ++b)
    if (t.byte_ids_[b] == kEmpty)
      return fail("no vocabulary token for the single byte " + std::to_string(b));

  // Merges: in range, not added tokens, result == left + right, each pair once.
  t.merges_.resize(h.n_merges);
  t.merge_slots_.assign(TableSize(h.n_merges), kEmpty);
  const size_t mmask = t.merge_slots_.size() - 1;
  for (uint32_t rank = 0; rank < h.n_merges; ++rank) {
    const char* p = blob.data() + merges_at + uint64_t(sizeof(format::BpeMerge)) * rank;
    format::BpeMerge m{Load32(p), Load32(p + 4), Load32(p + 8)};
    const std::string where = "merge " + std::to_string(rank);
    for (const uint32_t id : {m.left, m.right, m.result})
      if (id >= h.n_tokens || t.added_flags_[id] != kNotAdded)
        return fail(where + ": id " + std::to_string(id) + " is not a vocabulary token");
    const std::string_view l = t.PieceBytes(int(m.left)), r = t.PieceBytes(int(m.right));
    const std::string_view joined = t.PieceBytes(int(m.result));
    if (joined.size() != l.size() + r.size() || joined.substr(0, l.size()) != l ||
        joined.substr(l.size()) != r)
      return fail(where + ": token " + std::to_string(m.result) + " is not tokens " +
                  std::to_string(m.left) + " and " + std::to_string(m.right) + " joined");
    size_t slot = PairHash(m.left, m.right) & mmask;
    for (; t.merge_slots_[slot] != kEmpty; slot = (slot + 1) & mmask) {
      const format::BpeMerge& o = t.merges_[t.merge_slots_[slot]];
      if (o.left == m.left && o.right == m.right)
        return fail(where + ": the pair (" + std::to_string(m.left) + ", " +
                    std::to_string(m.right) + ") is already merge " +
                    std::to_string(t.merge_slots_[slot]));
    }
    t.merge_slots_[slot] = rank;
    t.merges_[rank] = m;
  }
  return t;
}

std::string_view ByteLevelBpe::PieceBytes(int id) const {
  if (!InRange(id)) return {};
  return std::string_view(text_).substr(token_begin_[id], token_begin_[id + 1] - token_begin_[id]);
}

int ByteLevelBpe::VocabId(std::string_view bytes) const {
  const size_t mask = vocab_slots_.size() - 1;
  for (size_t slot = Hash(bytes.data(), bytes.size()) & mask; vocab_slots_[slot] != kEmpty;
       slot = (slot + 1) & mask)
    if (PieceBytes(int(vocab_slots_[slot])) == bytes) return int(vocab_slots_[slot]);
  return -1;
}

int64_t ByteLevelBpe::MergeRank(uint32_t left, uint32_t right) const {
  if (merge_slots_.empty()) return -1;
  const size_t mask = merge_slots_.size() - 1;
  for (size_t slot = PairHash(left, right) & mask; merge_slots_[slot] != kEmpty;
       slot = (slot + 1) & mask) {
    const format::BpeMerge& m = merges_[merge_slots_[slot]];
    if (m.left == left && m.right == right) return merge_slots_[slot];
  }
  return -1;
}

int ByteLevelBpe::TokenId(std::string_view bytes) const {
  uint32_t node = 0;
  for (const char c : bytes) {
    const TrieNode& n = trie_[node];
    const TrieEdge* e = trie_edges_.data() + n.first_edge;
    const TrieEdge* end = e + n.n_edges;
    const TrieEdge* it = std::lower_bound(e, end, uint8_t(c),
                                          [](const TrieEdge& x, uint8_t b) { return x.byte < b; });
    if (it == end || it->byte != uint8_t(c)) return VocabId(bytes);
    node = it->child;
  }
  return !bytes.empty() && trie_[node].id >= 0 ? trie_[node].id : VocabId(bytes);
}

std::pair<int, size_t> ByteLevelBpe::MatchAdded(std::string_view text, size_t at) const {
  std::pair<int, size_t> best(-1, 0);
  uint32_t node = 0;
  for (size_t i = at; i < text.size(); ++i) {
    const TrieNode& n = trie_[node];
    const TrieEdge* e = trie_edges_.data() + n.first_edge;
    const TrieEdge* end = e + n.n_edges;
    const uint8_t c = uint8_t(text[i]);
    const TrieEdge* it =
        std::lower_bound(e, end, c, [](const TrieEdge& x, uint8_t b) { return x.byte < b; });
    if (it == end || it->byte != c) break;
    node = it->child;
    if (trie_[node].id >= 0) best = {trie_[node].id, i + 1 - at};
  }
  return best;
}

// The pre-tokenizer patterns, written out as the backtracking regex engines run them: at each
// position the alternatives are tried in order, and the first that matches (greedy quantifiers
// backing off as the engine would) gives the piece. Every character is matched by some
// alternative, so the pieces cover the section. Bytes that are not valid UTF-8 are kept as
// one-byte characters of no class (like punctuation); valid text never has them.
void ByteLevelBpe::PreTokenize(std::string_view text,
                               std::vector<std::pair<size_t, size_t>>* pieces) const {
  // Characters: their code point (or kInvalid), class bits and byte offset.
  constexpr uint32_t kInvalid = 0xFFFFFFFFu;
  std::vector<uint32_t> cps;
  std::vector<uint8_t> cls;
  std::vector<size_t> off;
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8::CharLen(text.substr(i));
    const uint32_t cp = len ? utf8::CodePoint(text.substr(i), len) : kInvalid;
    cps.push_back(cp);
    cls.push_back(len ? ClassOf(cp) : 0);
    off.push_back(i);
    i += len ? len : 1;
  }
  const size_t n = cps.size();
  off.push_back(text.size());

  const auto is = [&](size_t k, uint8_t bits) { return k < n && (cls[k] & bits) != 0; };
  const auto other = [&](size_t k) {  // [^\s\p{L}\p{N}]
    return k < n && (cls[k] & (kLetter | kNumber | kWhiteSpace)) == 0;
  };
  const auto newline = [&](size_t k) { return k < n && (cps[k] == '\r' || cps[k] == '\n'); };
  const auto run = [&](size_t k, uint8_t bits) {
    while (is(k, bits)) ++k;
    return k;
  };
  const bool llama3 = pre_tokenizer_ == format::PreTokenizer::kLlama3;
  // 's|'t|'re|'ve|'m|'ll|'d, ASCII case-insensitive for Llama-3's (?i:...) as Tokenizers.js
  // translates it ('[sS]|...); the end of the match, or `at` if none.
  const auto contraction = [&](size_t at) {
    if (cps[at] != '\'' || at + 1 >= n) return at;
    const auto fold = [&](size_t k) { return llama3 ? AsciiLower(cps[k]) : cps[k]; };
    const uint32_t a = fold(at + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return at + 2;
    if (at + 2 >= n) return at;
    const uint32_t b = fold(at + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return at + 3;
    return at;
  };
  // \s+(?!\S)|\s+ from a whitespace character at `at`: the run, less its last character when a
  // non-space follows and the run has more than one.
  const auto spaces = [&](size_t at) {
    const size_t end = run(at, kWhiteSpace);
    return end < n && end - at >= 2 ? end - 1 : end;
  };

  for (size_t i = 0; i < n;) {
    size_t end = i;
    if (llama3) {
      // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
      //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
      if ((end = contraction(i)) != i) {
      } else if (is(i, kLetter)) {
        end = run(i, kLetter);
      } else if (!newline(i) && !is(i, kNumber) && is(i + 1, kLetter)) {
        end = run(i + 1, kLetter);
      } else if (is(i, kNumber)) {
        end = i + 1;
        while (end - i < 3 && is(end, kNumber)) ++end;
      } else if (other(i) || (cps[i] == ' ' && other(i + 1))) {
        end = i + 1;
        while (other(end)) ++end;
        while (newline(end)) ++end;
      } else {  // whitespace
        const size_t ws_end = run(i, kWhiteSpace);
        size_t last_newline = ws_end;
        for (size_t k = ws_end; k > i; --k)
          if (newline(k - 1)) {
            last_newline = k - 1;
            break;
          }
        end = last_newline < ws_end ? last_newline + 1 : spaces(i);
      }
    } else {
      // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
      const size_t from = cps[i] == ' ' ? i + 1 : i;  // after the optional space
      if ((end = contraction(i)) != i) {
      } else if (is(i, kLetter) || (from > i && is(from, kLetter))) {
        end = run(is(i, kLetter) ? i : from, kLetter);
      } else if (is(i, kNumber) || (from > i && is(from, kNumber))) {
        end = run(is(i, kNumber) ? i : from, kNumber);
      } else if (other(i) || (from > i && other(from))) {
        end = other(i) ? i : from;
        while (other(end)) ++end;
      } else {
        end = spaces(i);
      }
    }
    if (end <= i) end = i + 1;  // unreachable: every character matches some alternative
    pieces->emplace_back(off[i], off[end]);
    i = end;
  }
}

void ByteLevelBpe::EncodePiece(std::string_view piece, std::vector<int>* ids) const {
  if (piece.size() == 1) {
    ids->push_back(int(byte_ids_[uint8_t(piece[0])]));
    return;
  }
  if (ignore_merges_) {
    if (const int id = VocabId(piece); id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  // One symbol per byte in a linked list; candidate merges in a min-heap by (rank, position of
  // the left symbol), which is HF's order: lowest rank first, leftmost on ties. A merged symbol
  // keeps its left part's position. Stale entries are recognised by their ids. O(n log n).
  struct Symbol {
    int prev, next;
    uint32_t id;
  };
  struct Candidate {
    uint32_t rank;
    int pos;
    uint32_t left, right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const int n = int(piece.size());
  std::vector<Symbol> sym(n);
  for (int i = 0; i < n; ++i)
    sym[i] = {i - 1, i + 1 < n ? i + 1 : -1, byte_ids_[uint8_t(piece[i])]};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto consider = [&](int left) {
    if (left < 0 || sym[left].next < 0) return;
    const uint32_t a = sym[left].id, b = sym[sym[left].next].id;
    if (const int64_t rank = MergeRank(a, b); rank >= 0) heap.push({uint32_t(rank), left, a, b});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = sym[c.pos];
    if (l.id != c.left || l.next < 0 || sym[l.next].id != c.right) continue;  // stale
    Symbol& r = sym[l.next];
    l.id = merges_[c.rank].result;
    r.id = kEmpty;  // no id is kEmpty: marks the symbol dead
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.pos;
    consider(l.prev);
    consider(c.pos);
  }
  for (int i = 0; i >= 0; i = sym[i].next) ids->push_back(int(sym[i].id));
}

std::vector<int> ByteLevelBpe::Encode(std::string_view text) const {
  std::vector<int> ids;
  std::vector<std::pair<size_t, size_t>> pieces;
  const auto encode_section = [&](std::string_view section) {
    pieces.clear();
    PreTokenize(section, &pieces);
    for (const auto& [begin, end] : pieces) EncodePiece(section.substr(begin, end - begin), &ids);
  };
  size_t start = 0;  // of the section not yet encoded
  for (size_t i = 0; i < text.size();) {
    if (added_first_byte_[uint8_t(text[i])]) {
      if (const auto [id, len] = MatchAdded(text, i); id >= 0) {
        if (i > start) encode_section(text.substr(start, i - start));
        ids.push_back(id);
        i += len, start = i;
        continue;
      }
    }
    ++i;
  }
  if (start < text.size()) encode_section(text.substr(start));
  return ids;
}

std::string ByteLevelBpe::Decode(const std::vector<int>& ids) const {
  std::string text, bytes;  // bytes: a run of vocabulary tokens, decoded when it ends
  for (const int id : ids) {
    if (!InRange(id)) continue;
    if (IsAdded(id)) {
      utf8::AppendLossy(bytes, &text);
      bytes.clear();
      text.append(PieceBytes(id));
    } else {
      bytes.append(PieceBytes(id));
    }
  }
  utf8::AppendLossy(bytes, &text);
  return text;
}

}  // namespace mobilellm
