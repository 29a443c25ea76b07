// ModelConfig: the hyper-parameters of a MobileLLM-style decoder, with validation and presets.
//
// Dimension vocabulary used across the project: dim, ffn_dim, n_heads, n_kv_heads, head_dim,
// vocab_size, n_ctx, n_blocks (stored), n_repeat, n_layers = n_blocks * n_repeat (logical).
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

  int n_layers() const { return n_blocks * n_repeat; }
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }

  // Parameters stored in the file (embedding counted once when tied), and the effective count
  // a model without sharing would need for the same depth.
  int64_t StoredParams() const;
  int64_t EffectiveParams() const;

  // Checks the invariants the engine relies on. `where` prefixes the message (a file name).
  Status Validate(const std::string& where) const;

  format::ConfigRecord ToRecord() const;
  static ModelConfig FromRecord(const format::ConfigRecord& r);

  // Exact MobileLLM shapes: "125m", "125m-ls", "125m-60l", "350m", "350m-ls", "600m", "1b", "1.5b".
  static Result<ModelConfig> Preset(const std::string& name);
  static std::vector<std::string> PresetNames();
};

}  // namespace mobilellm
