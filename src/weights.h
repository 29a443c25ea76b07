// Model::Weights: views of a model's tensors in the file mapping, bound once by Model::Load.
//
// Nothing is copied: every Tensor points into the read-only mapping (model_file.h). Quantized
// matrices carry their layout (rows or 16-row panels, format.h) for the kernels.
#pragma once

#include <vector>

#include "mobilellm/mobilellm.h"
#include "mobilellm/tensor.h"

namespace mobilellm {

struct Model::Weights {
  struct Block {
    Tensor attn_norm;  // [dim] f32
    Tensor attn_q;     // [n_heads * head_dim, dim]
    Tensor attn_k;     // [n_kv_heads * head_dim, dim]
    Tensor attn_v;     // [n_kv_heads * head_dim, dim]
    Tensor attn_o;     // [dim, n_heads * head_dim]
    Tensor ffn_norm;   // [dim] f32
    Tensor ffn_gate;   // [ffn_dim, dim]
    Tensor ffn_up;     // [ffn_dim, dim]
    Tensor ffn_down;   // [dim, ffn_dim]
  };
  Tensor token_embd;          // [vocab_size, dim]
  std::vector<Block> blocks;  // [n_blocks]: stored once, run n_repeat times each
  Tensor output_norm;         // [dim] f32
  Tensor output;              // [vocab_size, dim]: token_embd when the head is tied
};

}  // namespace mobilellm
