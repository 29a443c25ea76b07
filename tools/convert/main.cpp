// mobilellm-convert: HuggingFace MobileLLM checkpoints (or random weights of an exact MobileLLM
// shape) to one .mlm file. See format.h for the output, checkpoint.h for what is read.
//
// Exit codes: 0 written, 1 error (one line, no output file left behind), 2 usage error.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "chat_template_config.h"
#include "checkpoint.h"
#include "mobilellm/model_file.h"
#include "mobilellm/quantize.h"
#include "mobilellm/tokenizer.h"
#include "progress.h"
#include "spm_check.h"
#include "tokenizer_json.h"

namespace {

using namespace mobilellm;
using convert::Checkpoint;
using convert::SourceTensor;

int Fail(const std::string& message) {
  std::fprintf(stderr, "mobilellm-convert: error: %s\n", message.c_str());
  return 1;
}

std::string ShapeString(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Status CheckTokenizer(const std::string& bytes, const ModelConfig& c, const std::string& where) {
  // The SentencePiece library judges a SentencePiece model first: it names what the runtime
  // tokenizer cannot reproduce.
  if (c.tokenizer_kind == format::TokenizerKind::kSentencePiece)
    MOBILELLM_RETURN_IF_ERROR(convert::CheckWithSentencePiece(bytes, where));
  const auto tokenizer = Tokenizer::Parse(c.tokenizer_kind, bytes);
  if (!tokenizer.ok()) return Status::Error(where + ": " + tokenizer.status().message());
  if (tokenizer->size() > c.vocab_size)
    return Status::Error(where + ": tokenizer has " + std::to_string(tokenizer->size()) +
                         " pieces, more than vocab_size " + std::to_string(c.vocab_size));
  return {};
}

ModelWriter::Progress MakeProgress(bool quiet) {
  if (quiet) return {};
  // A bar on a terminal, a line per quarter elsewhere (src/cli/progress.h); ended when the
  // writer drops this function after the write.
  auto bar = std::make_shared<std::unique_ptr<cli::Progress>>();
  return [bar](uint64_t done, uint64_t total) {
    if (total < (64u << 20)) return;  // small models finish before a progress line helps
    if (!*bar)
      *bar = std::make_unique<cli::Progress>("mobilellm-convert: writing", total, "MiB", 1 << 20);
    (*bar)->Update(done);
  };
}

// Deterministic N(0, std) values: splitmix64 + Box-Muller, one stream per tensor.
void RandomNormal(float* dst, int64_t n, uint64_t seed, float std_dev) {
  uint64_t state = seed;
  auto next = [&] {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return double((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
  };
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = next() + 0x1.0p-54, u2 = next();
    const double r = std::sqrt(-2.0 * std::log(u1)) * std_dev;
    dst[i] = float(r * std::cos(6.283185307179586 * u2));
    if (i + 1 < n) dst[i + 1] = float(r * std::sin(6.283185307179586 * u2));
  }
}

// What a tensor is stored as for a requested --dtype. Norms stay f32. Quantized files keep the
// embedding (and a separate output head) at 8 bits even for q4_0, as ExecuTorch's phone recipe
// does: it is also the output classifier, where 4 bits cost the most quality. A matrix whose rows
// are not a multiple of 32 cannot be block-quantized and falls back to f16.
DType StorageType(const TensorSpec& spec, DType requested) {
  if (spec.is_norm) return DType::kF32;
  if (!format::IsQuantized(uint32_t(requested))) return requested;
  if (spec.shape.size() != 2 || spec.shape[1] % format::kBlock != 0) return DType::kF16;
  if (requested == DType::kQ4_0 && (spec.name == "token_embd" || spec.name == "output"))
    return DType::kQ8_0;
  return requested;
}

// Quantized matrices go in panels of 16 rows (what every kernel table reads fastest) unless the
// rows do not divide or --layout rows asks for the planar layout.
format::Layout StorageLayout(const TensorSpec& spec, DType dt, bool panels) {
  if (!panels || !format::IsQuantized(uint32_t(dt))) return format::Layout::kRows;
  return PreferredLayout(spec.shape[0]);
}

// Writes `n` f32 values into dst as `dtype` ([rows, cols] for quantized types).
void StoreAs(const float* v, const std::vector<int64_t>& shape, DType dtype, format::Layout layout,
             uint8_t* dst) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (format::IsQuantized(uint32_t(dtype)))
    return QuantizeMatrix(v, shape[0], shape[1], dtype, dst, layout);
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(dst + i * 4, &v[i], 4);
    } else {
      const uint16_t h = dtype == DType::kF16 ? F32ToF16(v[i]) : F32ToBF16(v[i]);
      std::memcpy(dst + i * 2, &h, 2);
    }
  }
}

struct Args {
  std::string input, output, dtype = "f16", preset, tokenizer, layout = "panels";
  std::string chat_template;  // --chat-template FILE
  uint64_t seed = 0;
  bool force = false, quiet = false;
};

// Adds the chat template (the checkpoint's, or --chat-template's), checked, and the tokenizer
// tensor last (tok and chat must stay alive until the write), and writes the file.
Status AddTokenizerAndWrite(ModelWriter& w, std::string_view tok, const Args& a,
                            convert::ChatTemplateConfig& chat) {
  if (!a.chat_template.empty())
    MOBILELLM_RETURN_IF_ERROR(convert::OverrideChatTemplate(chat, a.chat_template));
  MOBILELLM_RETURN_IF_ERROR(convert::CheckChatTemplate(chat));
  convert::AddChatTemplate(w, chat);
  w.Add(format::kTokenizerTensor, DType::kU8, {int64_t(tok.size())}, [tok](uint8_t* dst) {
    std::memcpy(dst, tok.data(), tok.size());
    return Status();
  });
  return w.Write(a.output, a.force, MakeProgress(a.quiet));
}

// Not an HF checkpoint but an .mlm of float weights (the shipped f16 demo model, a converted f32
// file): every tensor is read back as f32 and stored again at --dtype / --layout. Quantized sources
// are refused: quantizing twice compounds the rounding.
int Reencode(const Args& a, DType dtype, const std::string& producer) {
  auto file_r = ModelFile::Open(a.input);
  if (!file_r.ok()) return Fail(file_r.status().message());
  const ModelFile& f = **file_r;
  ModelWriter w(f.config(), producer + " (re-encoded from " + f.header().producer + ")");
  for (const TensorSpec& spec : ExpectedTensors(f.config())) {
    const format::TensorEntry& e = *f.Find(spec.name);  // Open checked presence and shapes
    if (format::IsQuantized(e.dtype))
      return Fail(a.input + ": tensor '" + spec.name + "' is already " +
                  format::DTypeName(e.dtype) +
                  " (re-encode from a float .mlm or convert the HF checkpoint)");
    const DType dt = StorageType(spec, dtype);
    const format::Layout lt = StorageLayout(spec, dt, a.layout == "panels");
    w.Add(
        spec.name, dt, spec.shape,
        [&f, &e, shape = spec.shape, dt, lt](uint8_t* dst) {
          const Tensor t = f.View(e);
          std::vector<float> v(size_t(t.numel()));
          const auto* h = static_cast<const uint16_t*>(t.data);
          for (size_t i = 0; i < v.size(); ++i)
            v[i] = t.dtype == DType::kF32   ? t.f32()[i]
                   : t.dtype == DType::kF16 ? F16ToF32(h[i])
                                            : BF16ToF32(h[i]);
          StoreAs(v.data(), shape, dt, lt, dst);
          return Status();
        },
        lt);
  }
  convert::ChatTemplateConfig chat = convert::ChatTemplateConfigOf(f);
  if (Status s = AddTokenizerAndWrite(w, f.Bytes(*f.Find(format::kTokenizerTensor)), a, chat);
      !s.ok())
    return Fail(s.message());
  if (!a.quiet)
    std::fprintf(stderr, "wrote %s: %s re-encoded as %s\n", a.output.c_str(), a.input.c_str(),
                 a.dtype.c_str());
  return 0;
}

int Run(const Args& a) {
  DType dtype = DType::kF16;
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0})
    if (a.dtype == format::DTypeName(uint32_t(d))) dtype = d;
  const std::string producer =
      "mobilellm-convert 0.1.0: " + a.dtype +
      (a.preset.empty() ? " from an HF checkpoint" : " random " + a.preset);
  if (!a.force && ::access(a.output.c_str(), F_OK) == 0)
    return Fail(a.output + ": already exists (use --force to overwrite)");

  if (!a.preset.empty()) {
    auto config = ModelConfig::Preset(a.preset);
    if (!config.ok()) return Fail(config.status().message());
    auto tok_r = convert::ReadTokenizerFile(a.tokenizer);
    if (!tok_r.ok()) return Fail(tok_r.status().message());
    const std::string& tok = tok_r->bytes;
    config->tokenizer_kind = tok_r->kind;
    if (Status s = CheckTokenizer(tok, *config, a.tokenizer); !s.ok()) return Fail(s.message());
    ModelWriter w(*config, producer);
    uint64_t index = 0;
    for (const TensorSpec& spec : ExpectedTensors(*config)) {
      const DType dt = StorageType(spec, dtype);
      const format::Layout lt = StorageLayout(spec, dt, a.layout == "panels");
      int64_t n = 1;
      for (int64_t d : spec.shape) n *= d;
      const uint64_t seed = a.seed * 0x100000001B3ull + ++index;
      w.Add(
          spec.name, dt, spec.shape,
          [=](uint8_t* dst) {
            std::vector<float> v(size_t(n), 1.0f);  // norms: 1
            if (!spec.is_norm) RandomNormal(v.data(), n, seed, 0.02f);
            StoreAs(v.data(), spec.shape, dt, lt, dst);
            return Status();
          },
          lt);
    }
    // Only --chat-template gives a template; its bos_token / eos_token are the tokenizer's
    // special tokens at the preset's bos and eos ids, as a checkpoint's tokenizer_config says.
    convert::ChatTemplateConfig chat;
    if (!a.chat_template.empty()) {
      auto parsed = Tokenizer::Parse(tok_r->kind, tok);
      if (!parsed.ok()) return Fail(a.tokenizer + ": " + parsed.status().message());
      for (auto [id, token] :
           {std::pair{config->bos_id, &chat.bos_token}, std::pair{config->eos_id, &chat.eos_token}})
        if (const std::string text = parsed->SpecialText(id); !text.empty()) *token = text;
    }
    if (Status s = AddTokenizerAndWrite(w, tok, a, chat); !s.ok()) return Fail(s.message());
    if (!a.quiet)
      std::fprintf(stderr, "wrote %s: random %s, %s, %.2fM parameters\n", a.output.c_str(),
                   a.preset.c_str(), a.dtype.c_str(), config->StoredParams() / 1e6);
    return 0;
  }

  // A directory is an HF checkpoint; a file (CLI11 checked that the path exists) is re-encoded as
  // an .mlm, and the loader names what else it may be (a pytorch_model.bin, a safetensors or GGUF
  // file) when it is not one.
  if (struct stat st; stat(a.input.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return Reencode(a, dtype, producer);

  auto ckpt_r = Checkpoint::Open(a.input);
  if (!ckpt_r.ok()) return Fail(ckpt_r.status().message());
  const Checkpoint& ckpt = **ckpt_r;
  const ModelConfig& c = ckpt.config;
  if (Status s = c.Validate(a.input + "/config.json"); !s.ok()) return Fail(s.message());
  if (Status s = CheckTokenizer(ckpt.tokenizer, c, ckpt.tokenizer_path); !s.ok())
    return Fail(s.message());

  ModelWriter w(c, producer);
  std::set<std::string> used;
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    const std::string hf = convert::HfTensorName(spec.name, c.arch);
    auto it = ckpt.tensors.find(hf);
    if (it == ckpt.tensors.end()) return Fail(a.input + ": missing tensor '" + hf + "'");
    const SourceTensor& src = it->second;
    if (src.shape != spec.shape)
      return Fail(src.file + ": tensor '" + hf + "' has shape " + ShapeString(src.shape) +
                  ", expected " + ShapeString(spec.shape) + " from config.json");
    used.insert(hf);
    const DType dt = StorageType(spec, dtype);
    const format::Layout lt = StorageLayout(spec, dt, a.layout == "panels");
    w.Add(
        spec.name, dt, spec.shape,
        [&src, shape = spec.shape, dt, lt](uint8_t* dst) {
          if (!format::IsQuantized(uint32_t(dt))) {
            convert::ConvertTensor(src, dt, dst);
          } else {
            std::vector<float> v(size_t(src.numel()));
            convert::ConvertTensor(src, DType::kF32, reinterpret_cast<uint8_t*>(v.data()));
            StoreAs(v.data(), shape, dt, lt, dst);
          }
          return Status();
        },
        lt);
  }
  for (const auto& [name, t] : ckpt.tensors)
    if (!used.count(name) && !convert::IsIgnorableHfTensor(name))
      return Fail(t.file + ": unexpected tensor '" + name +
                  "' (not part of a MobileLLM/Llama decoder with this config)");
  auto chat = convert::ReadChatTemplateConfig(a.input);
  if (!chat.ok()) return Fail(chat.status().message());
  if (Status s = AddTokenizerAndWrite(w, ckpt.tokenizer, a, *chat); !s.ok())
    return Fail(s.message());
  if (!a.quiet)
    std::fprintf(stderr, "wrote %s: %d blocks x %d, dim %d, %s head, %.2fM parameters, %s\n",
                 a.output.c_str(), c.n_blocks, c.n_repeat, c.dim, c.tied_head ? "tied" : "separate",
                 c.StoredParams() / 1e6, a.dtype.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mobilellm-convert: turn a HuggingFace MobileLLM checkpoint directory (config.json, "
      "tokenizer.model or tokenizer.json,\n"
      "pytorch_model.bin or model.safetensors) into one .mlm file, re-encode an .mlm of float "
      "weights\n"
      "at another --dtype, or write random weights of an exact MobileLLM shape for benchmarks."};
  Args a;
  auto* in = app.add_option("checkpoint_dir", a.input,
                            "HF checkpoint directory, or an .mlm of float weights to re-encode")
                 ->check(CLI::ExistingPath);
  app.add_option("-o,--output", a.output, "Output .mlm file")->required();
  app.add_option("--dtype", a.dtype,
                 "Weight type of the matrices (norms stay f32; q4_0 keeps the embedding at q8_0)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}));
  app.add_option("--layout", a.layout,
                 "Quantized matrices in panels of 16 rows (fastest on every CPU) or planar rows")
      ->capture_default_str()
      ->check(CLI::IsMember({"panels", "rows"}));
  std::string presets;
  for (const auto& p : ModelConfig::PresetNames()) presets += (presets.empty() ? "" : ", ") + p;
  auto* rnd =
      app.add_option("--random", a.preset, "Write N(0, 0.02) weights of this shape: " + presets)
          ->check(CLI::IsMember(ModelConfig::PresetNames()));
  app.add_option("--tokenizer", a.tokenizer,
                 "SentencePiece tokenizer.model or HF tokenizer.json (with --random)");
  app.add_option("--seed", a.seed, "Seed for --random")->capture_default_str();
  app.add_option("--chat-template", a.chat_template,
                 "Jinja chat template file, instead of tokenizer_config.json's chat_template")
      ->check(CLI::ExistingFile);
  app.add_flag("--force", a.force, "Overwrite the output file");
  app.add_flag("-q,--quiet", a.quiet, "No progress or summary on stderr");
  in->excludes(rnd);
  try {
    app.parse(argc, argv);
    if (a.input.empty() && a.preset.empty())
      throw CLI::ValidationError("give a checkpoint_dir or --random PRESET");
    if (!a.preset.empty() && a.tokenizer.empty())
      throw CLI::ValidationError("--random needs --tokenizer tokenizer.model|tokenizer.json");
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "mobilellm-convert: usage error: %s\nRun 'mobilellm-convert --help'.\n",
                 e.what());
    return 2;
  }
  ModelWriter::RemoveTempFileOnSignals();  // Ctrl-C mid-write leaves no temporary file
  try {
    return Run(a);
  } catch (const std::exception& e) {  // a bug, never a bad input: those are Status errors
    return Fail(std::string("internal error: ") + e.what());
  }
}
