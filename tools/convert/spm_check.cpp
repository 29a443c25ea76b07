// The SentencePiece library as the judge of the runtime tokenizer (see spm_check.h).
#include "spm_check.h"

#include <sentencepiece_processor.h>

#include <cstdint>

#include "mobilellm/tokenizer.h"

namespace mobilellm::convert {

namespace {

// The few ModelProto fields the library's public API does not expose (its generated protobuf
// header is not installed), read from the proto the library has already accepted: a walk over
// protobuf's wire format, fields by number (sentencepiece_model.proto).
struct Spec {
  int model_type = 1;  // TrainerSpec.model_type (3): 1 UNIGRAM (the default), 2 BPE, 3 WORD, 4 CHAR
  bool whitespace_as_suffix = false;    // TrainerSpec.treat_whitespace_as_suffix (24)
  std::string normalizer = "nmt_nfkc";  // NormalizerSpec.name (1), the default
  bool charsmap = false;                // NormalizerSpec.precompiled_charsmap (2) non-empty
  bool denormalizer = false;            // ModelProto.denormalizer_spec (5) with rules
};

// Calls fn(field, wire, varint, bytes) per field of `msg`; false on malformed input.
template <class F>
bool ForEachField(std::string_view msg, F&& fn) {
  size_t i = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && i < msg.size(); shift += 7) {
      const uint8_t b = uint8_t(msg[i++]);
      *v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < msg.size()) {
    uint64_t tag, v = 0;
    std::string_view bytes;
    if (!varint(&tag)) return false;
    switch (tag & 7) {
      case 0:
        if (!varint(&v)) return false;
        break;
      case 1:
        i += 8;
        break;
      case 2:
        if (!varint(&v) || v > msg.size() - i) return false;
        bytes = msg.substr(i, size_t(v));
        i += size_t(v);
        break;
      case 5:
        i += 4;
        break;
      default:
        return false;
    }
    if (i > msg.size()) return false;
    fn(uint32_t(tag >> 3), uint32_t(tag & 7), v, bytes);
  }
  return true;
}

Spec ReadSpec(std::string_view proto) {
  Spec s;
  ForEachField(proto, [&](uint32_t field, uint32_t wire, uint64_t, std::string_view bytes) {
    if (wire != 2) return;
    if (field == 2) {  // trainer_spec
      ForEachField(bytes, [&](uint32_t f, uint32_t w, uint64_t v, std::string_view) {
        if (f == 3 && w == 0) s.model_type = int(v);
        if (f == 24 && w == 0) s.whitespace_as_suffix = v != 0;
      });
    } else if (field == 3) {  // normalizer_spec
      ForEachField(bytes, [&](uint32_t f, uint32_t w, uint64_t, std::string_view b) {
        if (f == 1 && w == 2) s.normalizer = std::string(b);
        if (f == 2 && w == 2) s.charsmap = !b.empty();
      });
    } else if (field == 5) {  // denormalizer_spec
      ForEachField(bytes, [&](uint32_t f, uint32_t w, uint64_t, std::string_view b) {
        if (f == 2 && w == 2 && !b.empty()) s.denormalizer = true;
      });
    }
  });
  return s;
}

const char* ModelTypeName(int type) {
  switch (type) {
    case 1:
      return "a Unigram model";
    case 3:
      return "a word model";
    case 4:
      return "a character model";
    default:
      return "a model of unknown type";
  }
}

std::string IdList(const std::vector<int>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 24; ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  return out + (ids.size() > 24 ? " ...]" : "]");
}

// Printable, short: bytes outside ASCII's printable range as \xNN.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < 60; ++i) {
    const unsigned char c = text[i];
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out + (text.size() > 60 ? "...\"" : "\"");
}

}  // namespace

struct SpmJudge::Impl {
  sentencepiece::SentencePieceProcessor library;
  Tokenizer runtime;
};

SpmJudge::SpmJudge() : impl_(new Impl) {}
SpmJudge::~SpmJudge() = default;

Result<std::unique_ptr<SpmJudge>> SpmJudge::Load(std::string_view model, const std::string& where) {
  std::unique_ptr<SpmJudge> j(new SpmJudge());
  const auto loaded = j->impl_->library.LoadFromSerializedProto(model);
  if (!loaded.ok())
    return Status::Error(where +
                         ": the SentencePiece library cannot load it: " + loaded.ToString());
  const Spec spec = ReadSpec(model);
  const std::string refuse =
      where + ": the runtime tokenizer (src/tokenizer.cpp) cannot reproduce ";
  if (spec.model_type != 2)
    return Status::Error(refuse + ModelTypeName(spec.model_type) + " (model_type " +
                         std::to_string(spec.model_type) + "): it tokenizes BPE models only");
  if (spec.charsmap || (spec.normalizer != "identity" && !spec.normalizer.empty()))
    return Status::Error(refuse + "the normalizer '" + spec.normalizer +
                         "': it normalizes nothing (identity only)");
  if (spec.whitespace_as_suffix)
    return Status::Error(refuse + "treat_whitespace_as_suffix: it puts U+2581 before words");
  if (spec.denormalizer)
    return Status::Error(refuse + "a denormalizer: it decodes pieces as they are");
  auto runtime = Tokenizer::Parse(model);
  if (!runtime.ok()) return Status::Error(where + ": " + runtime.status().message());
  j->impl_->runtime = std::move(*runtime);

  const auto& sp = j->impl_->library;
  const Tokenizer& rt = j->impl_->runtime;
  if (sp.GetPieceSize() != rt.size())
    return Status::Error(refuse + "its vocabulary: the library reads " +
                         std::to_string(sp.GetPieceSize()) + " pieces, the runtime " +
                         std::to_string(rt.size()));
  for (int id = 0; id < rt.size(); ++id) {
    if (rt.TokenId(sp.IdToPiece(id)) != id || sp.IsControl(id) != rt.IsSpecial(id))
      return Status::Error(refuse + "its vocabulary: piece " + std::to_string(id) + " (" +
                           Quote(sp.IdToPiece(id)) + ") has another id or type in the runtime");
  }
  return j;
}

std::string SpmJudge::Compare(std::string_view text) const {
  const std::vector<int> want = impl_->library.EncodeAsIds(text);
  const std::vector<int> got = impl_->runtime.Encode(text);
  if (want != got)
    return "on " + Quote(text) + " the library gives ids " + IdList(want) + ", the runtime " +
           IdList(got);
  const std::string want_text = impl_->library.DecodeIds(want);
  const std::string got_text = impl_->runtime.Decode(want);
  if (want_text != got_text)
    return "ids " + IdList(want) + " decode to " + Quote(want_text) + " with the library, to " +
           Quote(got_text) + " with the runtime";
  return "";
}

std::vector<std::string> SpmJudge::Corpus() const {
  std::vector<std::string> texts = {
      "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
      "must be in want of a wife.",
      "Mr. Bennet was among the earliest of those who waited on Mr. Bingley.",
      "",
      " ",
      "  ",
      "\t",
      "\n",
      " \n \n",
      "a  b   c",
      "  leading",
      "trailing  ",
      "tab\tand\nnewline",
      "0",
      "42",
      "3.14159",
      "1,000,000",
      "2026-12-03T05:00:00Z",
      "x^2 + y^2 = z^2",
      "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
      "<s></s><unk><pad>",
      "don't won't it's",
      "caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9 \xC3\x85ngstr\xC3\xB6m",       // Latin accents
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xA7\xE6\x9B\xB8\xE3\x81\x8F",   // Japanese
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80",  // Russian
      "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",                                   // Arabic
      "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",                           // emoji
      "\xE2\x96\x81\xE2\x96\x81 U+2581 itself",
      "\x01\x02\x7F control bytes",
      "\xEF\xBB\xBF byte order mark",
      "ﬁ ligature, full\xEF\xBC\xA1width, \xE2\x84\xAB",  // what NFKC would change
  };
  const auto& sp = impl_->library;
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    if (sp.IsControl(id) || sp.IsByte(id) || sp.IsUnknown(id)) continue;
    texts.push_back(impl_->runtime.PieceBytes(id));
  }
  return texts;
}

Status CheckWithSentencePiece(std::string_view model, const std::string& where) {
  auto judge = SpmJudge::Load(model, where);
  if (!judge.ok()) return judge.status();
  for (const std::string& text : (*judge)->Corpus()) {
    const std::string diff = (*judge)->Compare(text);
    if (!diff.empty())
      return Status::Error(where +
                           ": the runtime tokenizer (src/tokenizer.cpp) does not reproduce "
                           "the SentencePiece library: " +
                           diff);
  }
  return {};
}

}  // namespace mobilellm::convert
