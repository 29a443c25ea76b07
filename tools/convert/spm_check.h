// The SentencePiece library as the judge of the runtime tokenizer (src/tokenizer.cpp).
//
// The engine reads tokenizer.model itself, so the phone binary links nothing but libc/libstdc++.
// The converter, built on the host, loads every tokenizer.model with the real library too
// (libsentencepiece, found with pkg-config) and refuses what the runtime tokenizer cannot
// reproduce: a model the library rejects, a model type other than BPE, a normalizer other than
// identity, whitespace as suffix, a denormalizer, a vocabulary read differently, or any text of a
// built-in corpus tokenized to other ids. Host-only: never linked into the engine.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/status.h"

namespace mobilellm::convert {

class SpmJudge {
 public:
  // Loads `model` (the bytes of a tokenizer.model) with the library and with the runtime
  // tokenizer; an error (prefixed with `where`) names what the runtime cannot reproduce.
  static Result<std::unique_ptr<SpmJudge>> Load(std::string_view model, const std::string& where);
  ~SpmJudge();

  // "" when the library and the runtime tokenizer give the same ids for `text` and decode those
  // ids to the same text; else one line saying where they differ.
  std::string Compare(std::string_view text) const;

  // The texts the converter checks: prose, whitespace runs, digits, punctuation, accents, CJK,
  // emoji, control bytes, and every piece of the vocabulary on its own.
  std::vector<std::string> Corpus() const;

 private:
  SpmJudge();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The converter's check: Load, then Compare on every text of Corpus(); the first difference
// refuses the model.
Status CheckWithSentencePiece(std::string_view model, const std::string& where);

}  // namespace mobilellm::convert
