// ModelConfig: validation, conversion to and from the on-disk record, and the MobileLLM presets.
#include "mobilellm/config.h"

#include <cmath>
#include <cstddef>
#include <cstring>

namespace mobilellm {

Status ValidateR1(const ModelConfig& c, const std::string& where);

int64_t ModelConfig::StoredParams() const {
  const int64_t per_block = int64_t(dim) * (q_dim() + 2 * kv_dim()) + int64_t(q_dim()) * dim +
                            3 * int64_t(dim) * ffn_dim + 2 * dim;
  return int64_t(vocab_size) * dim * (tied_head ? 1 : 2) + n_blocks * per_block + dim;
}

int64_t ModelConfig::EffectiveParams() const {
  ModelConfig unrolled = *this;
  unrolled.n_blocks = n_layers();
  unrolled.n_repeat = 1;
  return unrolled.StoredParams();
}

Status ModelConfig::Validate(const std::string& where) const {
  auto fail = [&](const std::string& what) {
    return Status::Error(where + ": invalid model config: " + what);
  };
  const struct {
    const char* name;
    int value;
  } positive[] = {{"vocab_size", vocab_size}, {"dim", dim},         {"ffn_dim", ffn_dim},
                  {"n_blocks", n_blocks},     {"n_heads", n_heads}, {"n_kv_heads", n_kv_heads},
                  {"head_dim", head_dim},     {"n_ctx", n_ctx}};
  for (const auto& p : positive)
    if (p.value <= 0)
      return fail(std::string(p.name) + " must be > 0, found " + std::to_string(p.value));
  // Generous caps keep every size product far from overflow and reject garbage headers.
  if (vocab_size > (1 << 22) || dim > (1 << 16) || ffn_dim > (1 << 18) || n_blocks > 4096 ||
      n_heads > 4096 || head_dim > 1024 || n_ctx > (1 << 22))
    return fail("a dimension is implausibly large (vocab " + std::to_string(vocab_size) + ", dim " +
                std::to_string(dim) + ", ffn " + std::to_string(ffn_dim) + ", blocks " +
                std::to_string(n_blocks) + ", ctx " + std::to_string(n_ctx) + ")");
  if (n_repeat < 1 || n_repeat > 16)
    return fail("n_repeat must be in 1..16, found " + std::to_string(n_repeat));
  if (n_heads % n_kv_heads != 0)
    return fail("n_heads (" + std::to_string(n_heads) + ") must be a multiple of n_kv_heads (" +
                std::to_string(n_kv_heads) + ")");
  if (dim != n_heads * head_dim)
    return fail("dim (" + std::to_string(dim) + ") must equal n_heads * head_dim (" +
                std::to_string(n_heads) + " * " + std::to_string(head_dim) + ")");
  if (head_dim % 2 != 0) return fail("head_dim must be even, found " + std::to_string(head_dim));
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) return fail("rope_theta must be > 0");
  if (rope_style != format::RopeStyle::kHalf && rope_style != format::RopeStyle::kInterleaved)
    return fail("unknown rope_style " + std::to_string(uint32_t(rope_style)));
  if (!(norm_eps > 0.0f) || !std::isfinite(norm_eps)) return fail("norm_eps must be > 0");
  if (tokenizer_kind != format::TokenizerKind::kSentencePiece &&
      tokenizer_kind != format::TokenizerKind::kByteLevelBpe)
    return fail("tokenizer_kind: expected 1 (sentencepiece) or 2 (byte-level BPE), found " +
                std::to_string(uint32_t(tokenizer_kind)));
  if (bos_id < 0 || bos_id >= vocab_size || eos_id < 0 || eos_id >= vocab_size)
    return fail("bos_id " + std::to_string(bos_id) + " / eos_id " + std::to_string(eos_id) +
                " outside the vocabulary of " + std::to_string(vocab_size));
  return ValidateR1(*this, where);
}

// The MobileLLM-R1 (format version 2) fields: neutral for v1, consistent for llama4_text.
Status ValidateR1(const ModelConfig& c, const std::string& where) {
  auto fail = [&](const std::string& what) {
    return Status::Error(where + ": invalid model config: " + what);
  };
  if (c.extra_eos_ids.size() > 3)
    return fail("at most 3 extra EOS ids, found " + std::to_string(c.extra_eos_ids.size()));
  for (int id : c.extra_eos_ids)
    if (id < 0 || id >= c.vocab_size)
      return fail("eos id " + std::to_string(id) + " outside the vocabulary of " +
                  std::to_string(c.vocab_size));
  if (c.arch == format::Arch::kMobileLlm) {
    if (c.qk_norm || c.attn_temperature_tuning || c.attention_chunk_size != 0 ||
        c.rope_scaling != format::RopeScaling::kNone || !c.layer_kinds.empty())
      return fail(
          "QK-norm, NoPE, chunked attention and RoPE scaling need the llama4_text "
          "architecture");
    return {};
  }
  if (c.arch != format::Arch::kLlama4Text)
    return fail("unknown architecture " + std::to_string(uint32_t(c.arch)) +
                " (expected 0 = mobilellm or 1 = llama4_text)");
  if (c.n_repeat != 1)
    return fail("llama4_text has no layer sharing, found n_repeat " + std::to_string(c.n_repeat));
  if (c.rope_style != format::RopeStyle::kInterleaved)
    return fail("llama4_text rotates adjacent pairs: rope_style must be interleaved");
  if (!std::isfinite(c.attn_scale) || !(c.floor_scale > 0.0f) || !std::isfinite(c.floor_scale))
    return fail("attn_scale must be finite and floor_scale > 0");
  if (!c.layer_kinds.empty() && int(c.layer_kinds.size()) != c.n_layers())
    return fail("layer_kinds has " + std::to_string(c.layer_kinds.size()) + " entries for " +
                std::to_string(c.n_layers()) + " layers");
  bool any_chunked = false;
  for (size_t l = 0; l < c.layer_kinds.size(); ++l) {
    if (c.layer_kinds[l] & ~(format::kNoPe | format::kChunked))
      return fail("layer " + std::to_string(l) + " has unknown kind bits " +
                  std::to_string(c.layer_kinds[l]));
    any_chunked |= (c.layer_kinds[l] & format::kChunked) != 0;
  }
  // Chunks start on the engine's key blocks of 16 positions (kernels.h: kKeyBlock).
  if (c.attention_chunk_size < 0 || c.attention_chunk_size > (1 << 22) ||
      (any_chunked && (c.attention_chunk_size == 0 || c.attention_chunk_size % 16 != 0)))
    return fail(
        "attention_chunk_size must be a positive multiple of 16 for chunked layers, found " +
        std::to_string(c.attention_chunk_size));
  switch (c.rope_scaling) {
    case format::RopeScaling::kNone:
      break;
    case format::RopeScaling::kLlama3:
      if (!(c.rope_factor > 0.0f) || !(c.rope_low_freq_factor > 0.0f) ||
          !(c.rope_high_freq_factor > c.rope_low_freq_factor) || !std::isfinite(c.rope_factor) ||
          !std::isfinite(c.rope_high_freq_factor) || c.rope_original_n_ctx <= 0)
        return fail(
            "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < "
            "high_freq_factor and original_max_position_embeddings > 0");
      break;
    default:
      return fail("unknown rope_scaling " + std::to_string(uint32_t(c.rope_scaling)));
  }
  return {};
}

bool ModelConfig::IsEos(int id) const {
  if (id == eos_id) return true;
  for (int e : extra_eos_ids)
    if (id == e) return true;
  return false;
}

float ModelConfig::TemperatureScale(int pos) const {
  return std::log1p(std::floor((float(pos) + 1.0f) / floor_scale)) * attn_scale + 1.0f;
}

std::vector<float> ModelConfig::RopeInvFreq() const {
  // Each step in f32 as torch evaluates it (a / tensor is tensor.reciprocal() * a).
  const int half = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i)
    inv[i] = 1.0f / std::pow(rope_theta, float(2 * i) / float(head_dim));
  if (rope_scaling != format::RopeScaling::kLlama3) return inv;
  // ref: HF modeling_rope_utils._compute_llama3_parameters
  const double old_ctx = rope_original_n_ctx;
  const float low_wavelen = float(old_ctx / rope_low_freq_factor);
  const float high_wavelen = float(old_ctx / rope_high_freq_factor);
  const float two_pi = float(2.0 * M_PI);
  const float span = float(double(rope_high_freq_factor) - double(rope_low_freq_factor));
  for (float& f : inv) {
    const float wavelen = (1.0f / f) * two_pi;
    const float scaled = wavelen > low_wavelen ? f / rope_factor : f;
    const float smooth = ((1.0f / wavelen) * float(old_ctx) - rope_low_freq_factor) / span;
    const float smoothed = (1.0f - smooth) * scaled / rope_factor + smooth * scaled;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    f = medium ? smoothed : scaled;
  }
  return inv;
}

uint32_t ModelConfig::FormatVersion() const {
  return arch == format::Arch::kMobileLlm && extra_eos_ids.empty() ? 1 : 2;
}

format::ConfigRecord ModelConfig::ToRecord() const {
  format::ConfigRecord r;
  std::memset(&r, 0, sizeof(r));
  r.vocab_size = vocab_size, r.dim = dim, r.ffn_dim = ffn_dim, r.n_blocks = n_blocks;
  r.n_repeat = n_repeat, r.n_heads = n_heads, r.n_kv_heads = n_kv_heads, r.head_dim = head_dim;
  r.n_ctx = n_ctx, r.rope_theta = rope_theta, r.rope_style = uint32_t(rope_style);
  r.norm_eps = norm_eps, r.bos_id = bos_id, r.eos_id = eos_id, r.tied_head = tied_head ? 1 : 0;
  r.tokenizer_kind = uint32_t(tokenizer_kind);
  r.arch = uint32_t(arch);
  r.flags = (qk_norm ? uint32_t(format::kQkNorm) : 0u) |
            (attn_temperature_tuning ? uint32_t(format::kAttnTemperatureTuning) : 0u) |
            (layer_kinds.empty() ? 0u : uint32_t(format::kLayerKinds));
  if (arch != format::Arch::kMobileLlm) r.attn_scale = attn_scale, r.floor_scale = floor_scale;
  r.attention_chunk_size = uint32_t(attention_chunk_size);
  r.rope_scaling = uint32_t(rope_scaling);
  if (rope_scaling != format::RopeScaling::kNone) {
    r.rope_factor = rope_factor, r.rope_low_freq_factor = rope_low_freq_factor;
    r.rope_high_freq_factor = rope_high_freq_factor;
    r.rope_original_n_ctx = uint32_t(rope_original_n_ctx);
  }
  for (int i = 0; i < 3; ++i)
    r.extra_eos_ids[i] = i < int(extra_eos_ids.size()) ? extra_eos_ids[size_t(i)] : -1;
  if (FormatVersion() == 1)  // a version-1 record: its reserved words all zero
    std::memset(&r.arch, 0, sizeof(r) - offsetof(format::ConfigRecord, arch));
  return r;
}

ModelConfig ModelConfig::FromRecord(const format::ConfigRecord& r, uint32_t version) {
  // Fields are clamped into int range so that Validate sees garbage, never overflow.
  auto i = [](uint32_t v) { return v > (1u << 30) ? (1 << 30) : int(v); };
  ModelConfig c;
  c.vocab_size = i(r.vocab_size), c.dim = i(r.dim), c.ffn_dim = i(r.ffn_dim);
  c.n_blocks = i(r.n_blocks), c.n_repeat = i(r.n_repeat), c.n_heads = i(r.n_heads);
  c.n_kv_heads = i(r.n_kv_heads), c.head_dim = i(r.head_dim), c.n_ctx = i(r.n_ctx);
  c.rope_theta = r.rope_theta, c.rope_style = format::RopeStyle(r.rope_style);
  c.norm_eps = r.norm_eps, c.bos_id = r.bos_id, c.eos_id = r.eos_id, c.tied_head = r.tied_head != 0;
  c.tokenizer_kind = format::TokenizerKind(r.tokenizer_kind);
  if (version < 2) return c;
  c.arch = format::Arch(r.arch);
  c.qk_norm = (r.flags & format::kQkNorm) != 0;
  c.attn_temperature_tuning = (r.flags & format::kAttnTemperatureTuning) != 0;
  c.attn_scale = r.attn_scale, c.floor_scale = r.floor_scale;
  c.attention_chunk_size = i(r.attention_chunk_size);
  c.rope_scaling = format::RopeScaling(r.rope_scaling);
  c.rope_factor = r.rope_factor, c.rope_low_freq_factor = r.rope_low_freq_factor;
  c.rope_high_freq_factor = r.rope_high_freq_factor;
  c.rope_original_n_ctx = i(r.rope_original_n_ctx);
  for (int32_t id : r.extra_eos_ids)
    if (id != -1) c.extra_eos_ids.push_back(id);
  return c;
}

namespace {

struct Preset {
  const char* name;
  int n_blocks, n_repeat, dim, n_heads, n_kv_heads, ffn_dim;
  bool tied;
};

// ref: facebookresearch/MobileLLM configs/*/config.json; shared/notes/mobilellm-reference.md.
constexpr Preset kPresets[] = {
    {"125m", 30, 1, 576, 9, 3, 1536, true},     {"125m-ls", 30, 2, 576, 9, 3, 1536, true},
    {"125m-60l", 60, 1, 576, 9, 3, 1536, true}, {"350m", 32, 1, 960, 15, 5, 2560, true},
    {"350m-ls", 32, 2, 960, 15, 5, 2560, true}, {"600m", 40, 1, 1152, 18, 6, 3072, true},
    {"1b", 54, 1, 1280, 20, 5, 3584, false},    {"1.5b", 54, 1, 1600, 25, 5, 4352, false},
};

// MobileLLM-R1 (Llama4ForCausalLM): ref: issue 18 and shared/notes/mobilellm-reference.md (sizes,
// vocab 128256, bos 128000, eos 128001/128008/128009, tied). A 3rd-party copy of the 360M
// config.json gives rope_theta 8e6, QK-norm on, RoPE on every layer, no temperature tuning and
// chunks of 32768 (no shorter than any context here, so no layer needs chunking); the base
// models' context is 4k.
constexpr Preset kR1Presets[] = {
    {"r1-140m", 15, 1, 576, 9, 3, 2048, true},
    {"r1-360m", 15, 1, 1024, 16, 4, 4096, true},
    {"r1-950m", 22, 1, 1536, 24, 6, 6144, true},
};

}  // namespace

Result<ModelConfig> ModelConfig::Preset(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.vocab_size = 32000, c.dim = p.dim, c.ffn_dim = p.ffn_dim, c.n_blocks = p.n_blocks;
    c.n_repeat = p.n_repeat, c.n_heads = p.n_heads, c.n_kv_heads = p.n_kv_heads, c.head_dim = 64;
    c.n_ctx = 2048, c.tied_head = p.tied;
    return c;
  }
  for (const auto& p : kR1Presets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.arch = format::Arch::kLlama4Text;
    c.vocab_size = 128256, c.dim = p.dim, c.ffn_dim = p.ffn_dim, c.n_blocks = p.n_blocks;
    c.n_heads = p.n_heads, c.n_kv_heads = p.n_kv_heads, c.head_dim = 64, c.n_ctx = 4096;
    c.rope_theta = 8e6f, c.rope_style = format::RopeStyle::kInterleaved, c.qk_norm = true;
    c.bos_id = 128000, c.eos_id = 128001, c.extra_eos_ids = {128008, 128009};
    c.tied_head = p.tied;
    return c;
  }
  std::string names;
  for (const auto& n : PresetNames()) names += (names.empty() ? "" : ", ") + n;
  return Status::Error("unknown preset '" + name + "' (have " + names + ")");
}

std::vector<std::string> ModelConfig::PresetNames() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.push_back(p.name);
  for (const auto& p : kR1Presets) names.push_back(p.name);
  return names;
}

}  // namespace mobilellm
