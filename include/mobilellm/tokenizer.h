// Tokenizer: the model's tokenizer, one interface over the two kinds a .mlm can hold
// (format::TokenizerKind):
//  - SentencePiece BPE (MobileLLM v1, LLaMA-2), read from the serialized ModelProto and held to
//    Python SentencePiece id for id;
//  - HF byte-level BPE (MobileLLM-R1, Llama-3, GPT-2 tokenizer.json), read from the blob the
//    converter makes (format.h) and held to HF's Tokenizers.js id for id.
// Both are our own implementations, so the engine links nothing but libc/libstdc++ and builds for
// phones with the NDK alone. A Tokenizer is immutable and cheap to copy (it shares its tables).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/format.h"
#include "mobilellm/status.h"

namespace mobilellm {

class SentencePiece;
class ByteLevelBpe;

class Tokenizer {
 public:
  // Parses the "tokenizer" tensor of a .mlm of this kind. A malformed or unsupported tokenizer
  // gives one error saying what is wrong; nothing is read outside `bytes`.
  static Result<Tokenizer> Parse(format::TokenizerKind kind, std::string_view bytes);
  // Parses a serialized sentencepiece.ModelProto (the bytes of tokenizer.model).
  static Result<Tokenizer> Parse(std::string_view proto) {
    return Parse(format::TokenizerKind::kSentencePiece, proto);
  }

  format::TokenizerKind kind() const;

  // Text -> ids (no BOS/EOS). Byte-level BPE matches added tokens (special ones included) in
  // the text; SentencePiece never makes control tokens from text. `continuation`: the text
  // continues earlier text (a chat's new turn after the cached ones), so SentencePiece adds no
  // dummy-prefix space and keeps leading spaces; byte-level BPE encodes it the same either way.
  std::vector<int> Encode(std::string_view text, bool continuation = false) const;
  // ids -> text. SentencePiece: as SentencePiece decodes (control ids dropped, byte pieces joined
  // into UTF-8, the dummy-prefix space removed). Byte-level BPE: as Tokenizers.js decodes with
  // clean_up_tokenization_spaces off (special tokens as their text, invalid UTF-8 as U+FFFD).
  // Ids out of range are skipped.
  std::string Decode(const std::vector<int>& ids) const;
  // The bytes one id contributes to streamed output, possibly part of a UTF-8 sequence:
  // SentencePiece "▁" as a space, <0x0A> as "\n", "" for control ids; byte-level BPE the token's
  // bytes (an added token's text). "" for ids out of range.
  std::string PieceBytes(int id) const;
  // Appends `bytes` (PieceBytes of consecutive ids, not ending inside a UTF-8 sequence that could
  // still complete) to `out` as Decode renders them: invalid UTF-8 as U+FFFD, one per byte
  // (SentencePiece) or one per maximal invalid subpart (byte-level BPE, as TextDecoder).
  void AppendText(std::string_view bytes, std::string* out) const;

  int size() const;
  // The id of the token written `piece` (SentencePiece: the piece as in the vocabulary, "▁" and
  // all; byte-level BPE: an added token's text, or a vocabulary token's bytes), or -1.
  int TokenId(std::string_view piece) const;
  // Whether `id` is a control token: SentencePiece type CONTROL (<s>, </s>), byte-level BPE an
  // added token marked special (<|begin_of_text|>, <|eot_id|>). False out of range.
  bool IsSpecial(int id) const;
  // A special token's text as a chat template writes it ("<s>", "<|begin_of_text|>"); "" when
  // `id` is not special.
  std::string SpecialText(int id) const;
  // One line for `mobilellm info`: the kind, its pre-tokenizer, and how many tokens.
  std::string Summary() const;

 private:
  std::shared_ptr<const SentencePiece> spm_;
  std::shared_ptr<const ByteLevelBpe> bpe_;
};

}  // namespace mobilellm
