// ModelConfig: the hyper-parameters of a MobileLLM-style decoder, with validation and presets.
//
// Dimension vocabulary used across the project: dim, ffn_dim, n_heads, n_kv_heads, head_dim,
// vocab_size, n_ctx, n_blocks (stored), n_repeat, n_layers = n_blocks * n_repeat (logical).
//
// Two architectures share the struct (format::Arch): MobileLLM v1 (HF Llama semantics) and
// MobileLLM-R1 (HF Llama4ForCausalLM, dense), whose extra fields are documented in format.h's
// ConfigRecord and are at their neutral values for v1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mobilellm/format.h"
#include "mobilellm/status.h"

namespace mobilellm {

struct ModelConfig {
  int vocab_size = 0;
  int dim = 0;
  int ffn_dim = 0;
  int n_blocks = 0;
  int n_repeat = 1;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int n_ctx = 0;
  float rope_theta = 10000.0f;
  format::RopeStyle rope_style = format::RopeStyle::kHalf;
  float norm_eps = 1e-5f;
  int bos_id = 1;
  int eos_id = 2;
  bool tied_head = true;
  format::TokenizerKind tokenizer_kind = format::TokenizerKind::kSentencePiece;

  // MobileLLM-R1 (format version 2). Neutral values describe a v1 model.
  format::Arch arch = format::Arch::kMobileLlm;
  bool qk_norm = false;                  // weightless RMS norm of q, k after RoPE (RoPE layers)
  bool attn_temperature_tuning = false;  // NoPE layers: q *= TemperatureScale(pos)
  float attn_scale = 0.1f, floor_scale = 8192.0f;
  int attention_chunk_size = 0;  // kChunked layers' chunk; 0 when no layer is chunked
  format::RopeScaling rope_scaling = format::RopeScaling::kNone;
  float rope_factor = 1.0f, rope_low_freq_factor = 1.0f, rope_high_freq_factor = 4.0f;
  int rope_original_n_ctx = 0;
  std::vector<int> extra_eos_ids;    // besides eos_id: at most 3
  std::vector<uint8_t> layer_kinds;  // [n_layers] format::LayerKind bits; empty: all zero

  int n_layers() const { return n_blocks * n_repeat; }
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }

  // Parameters stored in the file (embedding counted once when tied), and the effective count
  // a model without sharing would need for the same depth.
  int64_t StoredParams() const;

  bool IsEos(int id) const;
  bool NoPe(int layer) const {
    return !layer_kinds.empty() && (layer_kinds[size_t(layer)] & format::kNoPe);
  }
  bool Chunked(int layer) const {
    return !layer_kinds.empty() && (layer_kinds[size_t(layer)] & format::kChunked);
  }
  // The first key position a query at `pos` attends to on `layer`: its chunk's start when the
  // layer is chunked, else 0.
  int FirstKey(int layer, int pos) const {
    return Chunked(layer) ? pos / attention_chunk_size * attention_chunk_size : 0;
  }
  // NoPE temperature tuning (HF Llama4TextAttention, f32 as there): log1p(floor((pos + 1) /
  // floor_scale)) * attn_scale + 1.
  float TemperatureScale(int pos) const;
  // RoPE inverse frequencies [head_dim / 2], in f32 as HF computes them (with llama3 scaling).
  std::vector<float> RopeInvFreq() const;
  // 2 when the config needs format version 2's fields, else 1.
  uint32_t FormatVersion() const;
  int64_t EffectiveParams() const;

  // Checks the invariants the engine relies on. `where` prefixes the message (a file name).
  Status Validate(const std::string& where) const;

  // ToRecord leaves layer_kinds out (it is a tensor); FromRecord reads version-2 words only when
  // `version` >= 2.
  format::ConfigRecord ToRecord() const;
  static ModelConfig FromRecord(const format::ConfigRecord& r, uint32_t version);

  // Exact MobileLLM shapes: "125m", "125m-ls", "125m-60l", "350m", "350m-ls", "600m", "1b", "1.5b",
  // and MobileLLM-R1's "r1-140m", "r1-360m", "r1-950m".
  static Result<ModelConfig> Preset(const std::string& name);
  static std::vector<std::string> PresetNames();
};

}  // namespace mobilellm
