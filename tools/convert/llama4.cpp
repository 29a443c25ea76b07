// config.json of an HF Llama4ForCausalLM (model_type llama4_text) checkpoint: MobileLLM-R1.
//
// Read as HF's Llama4TextConfig reads it (transformers configuration_llama4.py), defaults included,
// because a field a checkpoint leaves out means HF's default, not ours: no "no_rope_layers" means a
// NoPE layer every no_rope_layer_interval (4) layers, no "layer_types" means every RoPE layer is
// chunked, no "moe_layers" means every layer is MoE. What the engine does not run (MoE layers, the
// vision tower, attention biases, RoPE scalings other than llama3) is refused here, by name, so
// a file that converts runs as PyTorch does.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "checkpoint.h"
#include "json_field.h"

namespace mobilellm::convert {

using nlohmann::json;

namespace {

// Typed reads of config.json fields: absent or null gives the fallback (an error without one), a
// value of another type an error naming the key. Never throws.
class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {}
  const std::string& where() const { return where_; }

  bool Has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  Status Error(const std::string& what) const { return Status::Error(where_ + ": " + what); }

  // Typed reads through JsonField, plus the ranges these fields must lie in.
  Result<int64_t> Int(const char* key, std::optional<int64_t> fallback) const {
    auto v = JsonField<int64_t>(j_, key, where_, fallback);
    if (v.ok() && (*v < 0 || *v > (1 << 30)))
      return Error("\"" + std::string(key) + "\" must be a non-negative integer");
    return v;
  }
  Result<double> Number(const char* key, std::optional<double> fallback) const {
    auto v = JsonField<double>(j_, key, where_, fallback);
    if (v.ok() && !std::isfinite(*v)) return Error("\"" + std::string(key) + "\" must be finite");
    return v;
  }
  Result<bool> Bool(const char* key, bool fallback) const {
    return JsonField<bool>(j_, key, where_, fallback);
  }

 private:
  const json& j_;
  std::string where_;
};

#define MOBILELLM_ASSIGN(dst, expr)   \
  do {                                \
    auto r_ = (expr);                 \
    if (!r_.ok()) return r_.status(); \
    dst = *r_;                        \
  } while (0)

// no_rope_layers / layer_types / moe_layers entries as HF indexes them: the first n_layers.
Result<std::vector<int64_t>> IntList(const Fields& f, const json& v, const char* key) {
  if (!v.is_array()) return f.Error("\"" + std::string(key) + "\" must be a list");
  std::vector<int64_t> out;
  for (const json& e : v) {
    if (e.is_boolean()) {
      out.push_back(e.get<bool>() ? 1 : 0);
    } else if (e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() < (1 << 30)) {
      out.push_back(e.get<int64_t>());
    } else {
      return f.Error("\"" + std::string(key) + "\" must hold non-negative integers");
    }
  }
  return out;
}

// rope_scaling (or rope_parameters, newer transformers): none / default, or llama3.
Status ReadRope(const json& j, const Fields& f, ModelConfig& c) {
  double theta = 500000.0;  // Llama4TextConfig.default_theta
  MOBILELLM_ASSIGN(theta, f.Number("rope_theta", theta));
  // HF: rope_parameters = rope_scaling or rope_parameters (an empty dict counts as none).
  const json* rope = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"})
    if (f.Has(key) && !(j[key].is_object() && j[key].empty())) rope = &j[key];
  c.rope_theta = float(theta);
  if (rope == nullptr) return {};
  if (!rope->is_object()) return f.Error("\"rope_scaling\" must be an object or null");
  const Fields r(*rope, f.where() + " (rope_scaling)");
  std::string type = "default";
  for (const char* key : {"type", "rope_type"})
    if (r.Has(key)) {
      if (!(*rope)[key].is_string())
        return f.Error("rope_scaling " + std::string(key) + " must be a string");
      type = (*rope)[key].get<std::string>();
    }
  MOBILELLM_ASSIGN(theta, r.Number("rope_theta", theta));
  c.rope_theta = float(theta);
  double partial = 1.0;
  MOBILELLM_ASSIGN(partial, r.Number("partial_rotary_factor", partial));
  if (partial != 1.0)
    return f.Error("partial_rotary_factor " + std::to_string(partial) +
                   " is not supported (RoPE over the whole head only)");
  if (type == "default") return {};
  if (type != "llama3")
    return f.Error("rope scaling type '" + type +
                   "' is not supported (mobilellm runs none or 'llama3')");
  c.rope_scaling = format::RopeScaling::kLlama3;
  double factor = 0, low = 0, high = 0;
  int64_t original = c.n_ctx;
  MOBILELLM_ASSIGN(factor, r.Number("factor", std::nullopt));
  MOBILELLM_ASSIGN(low, r.Number("low_freq_factor", std::nullopt));
  MOBILELLM_ASSIGN(high, r.Number("high_freq_factor", std::nullopt));
  MOBILELLM_ASSIGN(original, r.Int("original_max_position_embeddings", original));
  c.rope_factor = float(factor), c.rope_low_freq_factor = float(low);
  c.rope_high_freq_factor = float(high), c.rope_original_n_ctx = int(original);
  return {};
}

}  // namespace

bool IsLlama4(const std::string& architecture, const std::string& model_type) {
  return architecture.empty() ? model_type == "llama4_text" : architecture == "Llama4ForCausalLM";
}

Status ReadLlama4Config(const json& j, const std::string& where, ModelConfig* config) {
  const Fields f(j, where);
  ModelConfig& c = *config;
  c = ModelConfig();
  c.arch = format::Arch::kLlama4Text;
  c.rope_style = format::RopeStyle::kInterleaved;  // complex RoPE on (x[2i], x[2i+1]), as stored

  if (f.Has("vision_config") || f.Has("text_config"))
    return f.Error(
        "a multimodal Llama-4 config (vision_config / text_config) is not supported: "
        "mobilellm runs the text-only Llama4ForCausalLM");
  bool bias = false;
  MOBILELLM_ASSIGN(bias, f.Bool("attention_bias", false));
  if (bias) return f.Error("attention_bias true is not supported (MobileLLM-R1 has no biases)");
  if (f.Has("hidden_act") && j["hidden_act"] != "silu")
    return f.Error("hidden_act must be \"silu\"");

  struct {
    const char* key;
    int* dst;
    std::optional<int64_t> fallback;  // HF Llama4TextConfig's default; none: required
  } ints[] = {{"vocab_size", &c.vocab_size, std::nullopt},
              {"hidden_size", &c.dim, std::nullopt},
              {"num_hidden_layers", &c.n_blocks, std::nullopt},
              {"num_attention_heads", &c.n_heads, std::nullopt},
              {"intermediate_size_mlp", &c.ffn_dim, 16384},
              {"max_position_embeddings", &c.n_ctx, 4096 * 32},
              {"bos_token_id", &c.bos_id, 1}};
  for (const auto& i : ints) MOBILELLM_ASSIGN(*i.dst, f.Int(i.key, i.fallback));
  MOBILELLM_ASSIGN(c.n_kv_heads, f.Int("num_key_value_heads", c.n_heads));
  // HF: head_dim defaults to 128; an explicit null means hidden_size / num_attention_heads.
  if (j.contains("head_dim") && j["head_dim"].is_null())
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  else
    MOBILELLM_ASSIGN(c.head_dim, f.Int("head_dim", 128));
  double eps = 1e-5;
  MOBILELLM_ASSIGN(eps, f.Number("rms_norm_eps", eps));
  c.norm_eps = float(eps);
  MOBILELLM_ASSIGN(c.tied_head, f.Bool("tie_word_embeddings", false));

  // eos_token_id: an id or a list of them (R1: 128001, 128008, 128009); generation stops on any.
  if (f.Has("eos_token_id") && j["eos_token_id"].is_array()) {
    auto ids = IntList(f, j["eos_token_id"], "eos_token_id");
    if (!ids.ok()) return ids.status();
    if (ids->empty() || ids->size() > 4)
      return f.Error("\"eos_token_id\" must list 1 to 4 ids, found " + std::to_string(ids->size()));
    c.eos_id = int((*ids)[0]);
    for (size_t i = 1; i < ids->size(); ++i) c.extra_eos_ids.push_back(int((*ids)[i]));
  } else {
    MOBILELLM_ASSIGN(c.eos_id, f.Int("eos_token_id", 2));
  }

  MOBILELLM_RETURN_IF_ERROR(ReadRope(j, f, c));
  MOBILELLM_ASSIGN(c.qk_norm, f.Bool("use_qk_norm", true));
  MOBILELLM_ASSIGN(c.attn_temperature_tuning, f.Bool("attn_temperature_tuning", true));
  double attn_scale = 0.1, floor_scale = 8192;
  MOBILELLM_ASSIGN(attn_scale, f.Number("attn_scale", attn_scale));
  MOBILELLM_ASSIGN(floor_scale, f.Number("floor_scale", floor_scale));
  c.attn_scale = float(attn_scale), c.floor_scale = float(floor_scale);
  const int n = c.n_blocks;
  if (n <= 0 || n > 4096) return f.Error("num_hidden_layers must be in 1..4096");

  // MoE: HF builds an MoE feed-forward on every layer of moe_layers, which defaults to every
  // interleave_moe_layer_step-th layer.
  std::vector<int64_t> moe;
  if (f.Has("moe_layers")) {
    auto list = IntList(f, j["moe_layers"], "moe_layers");
    if (!list.ok()) return list.status();
    moe = *list;
  } else {
    int64_t step = 1;
    MOBILELLM_ASSIGN(step, f.Int("interleave_moe_layer_step", step));
    if (step == 0) return f.Error("interleave_moe_layer_step 0 without \"moe_layers\"");
    for (int64_t l = step - 1; l < n; l += step) moe.push_back(l);
  }
  if (!moe.empty()) {
    int64_t experts = 16;
    MOBILELLM_ASSIGN(experts, f.Int("num_local_experts", experts));
    return f.Error("mixture-of-experts layers are not supported (" + std::to_string(moe.size()) +
                   " MoE layers, num_local_experts " + std::to_string(experts) +
                   "): mobilellm runs dense llama4_text models such as MobileLLM-R1");
  }

  // Per layer: RoPE or NoPE (no_rope_layers, 1 = RoPE), full or chunked attention (layer_types).
  std::vector<int64_t> rope_layers;
  if (f.Has("no_rope_layers")) {
    auto list = IntList(f, j["no_rope_layers"], "no_rope_layers");
    if (!list.ok()) return list.status();
    rope_layers = *list;
  }
  if (rope_layers.empty()) {  // HF: a NoPE layer every no_rope_layer_interval layers
    int64_t interval = 4;
    MOBILELLM_ASSIGN(interval, f.Int("no_rope_layer_interval", interval));
    if (interval == 0) return f.Error("no_rope_layer_interval must be > 0");
    for (int l = 0; l < n; ++l) rope_layers.push_back((l + 1) % interval != 0);
  }
  if (int(rope_layers.size()) < n)
    return f.Error("\"no_rope_layers\" has " + std::to_string(rope_layers.size()) +
                   " entries for " + std::to_string(n) + " layers");
  std::vector<bool> chunked(static_cast<size_t>(n));
  if (f.Has("layer_types")) {
    const json& types = j["layer_types"];
    if (!types.is_array() || int(types.size()) < n)
      return f.Error("\"layer_types\" must list a type for each of the " + std::to_string(n) +
                     " layers");
    for (int l = 0; l < n; ++l) {
      const json& t = types[size_t(l)];
      const std::string name = t.is_string() ? t.get<std::string>() : t.dump();
      if (name != "full_attention" && name != "chunked_attention")
        return f.Error("layer " + std::to_string(l) + " has attention type '" + name +
                       "' (supported: full_attention, chunked_attention)");
      chunked[size_t(l)] = name == "chunked_attention";
    }
  } else {  // HF: RoPE layers are chunked, NoPE layers see everything
    for (int l = 0; l < n; ++l) chunked[size_t(l)] = rope_layers[size_t(l)] != 0;
  }
  int64_t chunk = 8192;
  if (j.contains("attention_chunk_size") && j["attention_chunk_size"].is_null())
    chunk = 0;
  else
    MOBILELLM_ASSIGN(chunk, f.Int("attention_chunk_size", chunk));
  std::vector<uint8_t> kinds(static_cast<size_t>(n));
  bool any = false;
  for (int l = 0; l < n; ++l) {
    kinds[size_t(l)] = uint8_t((rope_layers[size_t(l)] ? 0 : format::kNoPe) |
                               (chunked[size_t(l)] ? format::kChunked : 0));
    any |= kinds[size_t(l)] != 0;
  }
  if (std::find(chunked.begin(), chunked.end(), true) != chunked.end()) {
    if (chunk == 0) return f.Error("chunked_attention layers need an attention_chunk_size");
    if (chunk % 16 != 0)
      return f.Error("attention_chunk_size " + std::to_string(chunk) +
                     " is not supported (mobilellm needs a multiple of 16)");
    c.attention_chunk_size = int(chunk);
  }
  if (any) c.layer_kinds = std::move(kinds);
  // Temperature tuning only touches NoPE layers: without one, the flag changes nothing.
  if (std::find(rope_layers.begin(), rope_layers.begin() + n, 0) == rope_layers.begin() + n)
    c.attn_temperature_tuning = false;
  return {};
}

}  // namespace mobilellm::convert
