// SentencePiece: SentencePiece BPE models (LLaMA's, MobileLLM's), read from the serialized
// ModelProto. Internal to the engine; the public face is Tokenizer (tokenizer.h).
//
// It follows SentencePiece's BPE encoder exactly: identity normalization (whitespace escaped to
// U+2581, optional dummy prefix), characters merged highest score first (leftmost on ties), pieces
// missing from the vocabulary spelled as <0xXX> byte pieces when the model has byte fallback.
// Tests hold it to Python SentencePiece id for id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mobilellm/status.h"

namespace mobilellm {

class SentencePiece {
 public:
  // Parses a serialized sentencepiece.ModelProto (the bytes of tokenizer.model). Models other
  // than BPE with the identity normalizer are rejected with a message saying why.
  static Result<SentencePiece> Parse(std::string_view proto);

  // Text -> ids (no BOS/EOS). A continuation of earlier text gets no dummy prefix and keeps its
  // leading spaces, as the text's part of a whole encoding would.
  std::vector<int> Encode(std::string_view text, bool continuation = false) const;
  // ids -> text as SentencePiece decodes it: control ids dropped, byte pieces joined into UTF-8
  // (invalid sequences become U+FFFD), the dummy-prefix space removed.
  std::string Decode(const std::vector<int>& ids) const;
  // The bytes one id contributes to streamed output ("▁" as a space, <0x0A> as "\n"); "" for
  // control ids and ids out of range.
  std::string PieceBytes(int id) const;

  int size() const { return int(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_[id].text; }
  bool IsControl(int id) const { return pieces_[id].type == kControl; }
  int PieceId(std::string_view piece) const;  // -1 when absent
  bool IsByte(int id) const { return pieces_[id].type == kByte; }
  bool IsUnknown(int id) const { return pieces_[id].type == kUnknown; }

 private:
  // sentencepiece.ModelProto.SentencePiece.Type
  enum Type { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0.0f;
    Type type = kNormal;
  };

  using Splits = std::unordered_map<std::string, std::pair<std::string, std::string>>;
  // Appends the ids of one merged symbol: unused pieces split back into the pair that made them
  // (`splits`, taken apart with an explicit stack), unknown ones spelled as bytes or as <unk>.
  void Emit(const std::string& piece, const Splits& splits, std::vector<int>* ids) const;

  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int> vocab_;     // normal, user-defined and unused pieces
  std::unordered_map<std::string, int> reserved_;  // control, unknown and byte pieces
  // User-defined pieces as a byte trie, so Encode's cost does not grow with their number:
  // (node << 8 | byte) -> child node, node 0 the root; user_end_[node]: a piece ends there.
  std::unordered_map<uint64_t, uint32_t> user_trie_;
  std::vector<bool> user_end_ = {false};
  // Length of the longest user-defined piece `s` starts with; 0 if none. O(that length).
  size_t UserDefinedPrefix(std::string_view s) const;
  std::string unk_surface_;  // what <unk> decodes to: " ⁇ " unless the model says otherwise
  int unk_id_ = 0;
  int byte_ids_[256] = {};
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
};

}  // namespace mobilellm
