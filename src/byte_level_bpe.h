// ByteLevelBpe: HF tokenizers' byte-level BPE (Llama-3's, GPT-2's tokenizer.json), read from the
// blob mobilellm-convert stores in a .mlm (format.h: TokenizerKind::kByteLevelBpe). Internal to
// the engine; the public face is Tokenizer (tokenizer.h).
//
// Encoding follows HF tokenizers as Tokenizers.js implements it (the oracle of the tests):
//  1. added tokens are cut out of the raw text first, leftmost-longest;
//  2. each remaining section is split by a hand-written twin of the tokenizer.json's Split regex
//     (no regex engine: Unicode classes come from unicode_tables.inc);
//  3. each piece, as bytes, is one vocabulary token if ignore_merges and it is one, else its bytes
//     are merged by rank, lowest rank first and leftmost on ties.
// Not supported (refused by the converter): normalizers, added-token lstrip/rstrip/single_word,
// ByteLevel add_prefix_space, dropout, unk tokens, byte fallback.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/format.h"
#include "mobilellm/status.h"

namespace mobilellm {

class ByteLevelBpe {
 public:
  // Checks every field of the blob (format.h) and builds the lookup tables: O(size of blob).
  // Any malformed blob gives one error naming what is wrong; nothing is read out of bounds.
  static Result<ByteLevelBpe> Parse(std::string_view blob);

  // Text (any bytes; invalid UTF-8 bytes are kept as bytes) -> ids. O(n log n) in the text.
  std::vector<int> Encode(std::string_view text) const;
  // ids -> text as Tokenizers.js decodes them (without clean_up_tokenization_spaces): runs of
  // vocabulary tokens as UTF-8 with U+FFFD for invalid sequences, added tokens as their content.
  // Ids out of range are skipped.
  std::string Decode(const std::vector<int>& ids) const;
  // The bytes token `id` stands for (possibly part of a UTF-8 sequence); "" when out of range.
  std::string_view PieceBytes(int id) const;

  int size() const { return int(n_tokens_); }
  bool IsAdded(int id) const { return InRange(id) && added_flags_[id] != kNotAdded; }
  bool IsSpecial(int id) const {
    return InRange(id) && added_flags_[id] != kNotAdded && (added_flags_[id] & 1) != 0;
  }
  // The id of the added token with this content, else of the vocabulary token with these bytes;
  // -1 if neither exists.
  int TokenId(std::string_view bytes) const;
  format::PreTokenizer pre_tokenizer() const { return pre_tokenizer_; }

 private:
  static constexpr uint32_t kNotAdded = 0xFFFFFFFFu;
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;  // a free hash slot

  bool InRange(int id) const { return id >= 0 && uint32_t(id) < n_tokens_; }
  // Appends the pieces of one section without added tokens (step 2), as byte ranges.
  void PreTokenize(std::string_view text, std::vector<std::pair<size_t, size_t>>* pieces) const;
  // Appends the ids of one pre-token (step 3).
  void EncodePiece(std::string_view piece, std::vector<int>* ids) const;
  int VocabId(std::string_view bytes) const;  // non-added tokens only; -1 if absent
  // The rank of merging (left, right), or -1.
  int64_t MergeRank(uint32_t left, uint32_t right) const;
  // The longest added token starting at text[at], as (id, length), or (-1, 0).
  std::pair<int, size_t> MatchAdded(std::string_view text, size_t at) const;

  format::PreTokenizer pre_tokenizer_ = format::PreTokenizer::kLlama3;
  bool ignore_merges_ = false;
  uint32_t n_tokens_ = 0;
  std::string text_;                      // every token's bytes (owned: the blob may go away)
  std::vector<uint32_t> token_begin_;     // [n_tokens + 1] token i is text_[begin[i], begin[i+1])
  std::vector<uint32_t> added_flags_;     // [n_tokens] BpeAddedFlags, or kNotAdded
  std::vector<format::BpeMerge> merges_;  // [n_merges] in rank order
  uint32_t byte_ids_[256] = {};           // the token of each single byte

  // Open-addressing hash tables (linear probing, power-of-two sizes, at most half full).
  std::vector<uint32_t> vocab_slots_;  // vocabulary ids by their bytes' hash, or kEmpty
  std::vector<uint32_t> merge_slots_;  // merge ranks by hash of (left, right), or kEmpty

  // Added tokens as a byte trie: node 0 is the root; edges sorted by byte within a node.
  struct TrieNode {
    uint32_t first_edge = 0, n_edges = 0;
    int32_t id = -1;  // the added token ending here
  };
  struct TrieEdge {
    uint8_t byte;
    uint32_t child;
  };
  std::vector<TrieNode> trie_;
  std::vector<TrieEdge> trie_edges_;
  bool added_first_byte_[256] = {};  // bytes an added token can start with
};

}  // namespace mobilellm
