// ModelConfig: validation, conversion to and from the on-disk record, and the MobileLLM presets.
#include "mobilellm/config.h"

#include <cmath>
#include <cstring>

namespace mobilellm {

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
  if (bos_id < 0 || bos_id >= vocab_size || eos_id < 0 || eos_id >= vocab_size)
    return fail("bos_id " + std::to_string(bos_id) + " / eos_id " + std::to_string(eos_id) +
                " outside the vocabulary of " + std::to_string(vocab_size));
  return {};
}

format::ConfigRecord ModelConfig::ToRecord() const {
  format::ConfigRecord r;
  std::memset(&r, 0, sizeof(r));
  r.vocab_size = vocab_size, r.dim = dim, r.ffn_dim = ffn_dim, r.n_blocks = n_blocks;
  r.n_repeat = n_repeat, r.n_heads = n_heads, r.n_kv_heads = n_kv_heads, r.head_dim = head_dim;
  r.n_ctx = n_ctx, r.rope_theta = rope_theta, r.rope_style = uint32_t(rope_style);
  r.norm_eps = norm_eps, r.bos_id = bos_id, r.eos_id = eos_id, r.tied_head = tied_head ? 1 : 0;
  r.tokenizer_kind = uint32_t(format::TokenizerKind::kSentencePiece);
  return r;
}

ModelConfig ModelConfig::FromRecord(const format::ConfigRecord& r) {
  // Fields are clamped into int range so that Validate sees garbage, never overflow.
  auto i = [](uint32_t v) { return v > (1u << 30) ? (1 << 30) : int(v); };
  ModelConfig c;
  c.vocab_size = i(r.vocab_size), c.dim = i(r.dim), c.ffn_dim = i(r.ffn_dim);
  c.n_blocks = i(r.n_blocks), c.n_repeat = i(r.n_repeat), c.n_heads = i(r.n_heads);
  c.n_kv_heads = i(r.n_kv_heads), c.head_dim = i(r.head_dim), c.n_ctx = i(r.n_ctx);
  c.rope_theta = r.rope_theta, c.rope_style = format::RopeStyle(r.rope_style);
  c.norm_eps = r.norm_eps, c.bos_id = r.bos_id, c.eos_id = r.eos_id, c.tied_head = r.tied_head != 0;
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
  std::string names;
  for (const auto& n : PresetNames()) names += (names.empty() ? "" : ", ") + n;
  return Status::Error("unknown preset '" + name + "' (have " + names + ")");
}

std::vector<std::string> ModelConfig::PresetNames() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.push_back(p.name);
  return names;
}

}  // namespace mobilellm
