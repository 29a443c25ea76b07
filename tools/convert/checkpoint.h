// Reads a HuggingFace MobileLLM (or plain Llama) checkpoint directory into tensor views:
// config.json, tokenizer.model, and weights from model.safetensors or pytorch_model.bin,
// single files or sharded *.index.json sets, in f32, f16 or bf16. Nothing is copied: tensors
// point into the mapped weight files, which the Checkpoint keeps open.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mapped_file.h"
#include "mobilellm/config.h"
#include "mobilellm/tensor.h"

namespace mobilellm::convert {

struct SourceTensor {
  std::string file;                     // where it came from, for messages
  DType dtype;                          // f32, f16 or bf16
  std::vector<int64_t> shape, strides;  // strides in elements
  const uint8_t* data;                  // element [0, 0, ...]
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class Checkpoint {
 public:
  static Result<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  ModelConfig config;          // from config.json (+ whether lm_head.weight exists)
  std::string tokenizer;       // the "tokenizer" tensor (config.tokenizer_kind says which)
  std::string tokenizer_path;  // tokenizer.model or tokenizer.json
  std::map<std::string, SourceTensor> tensors;  // by HF name
  std::vector<std::string> weight_files;

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  friend Status LoadWeightFile(Checkpoint&, const std::string&);
};

// Reads one weight file (safetensors or torch zip) into ckpt.tensors.
Status LoadWeightFile(Checkpoint& ckpt, const std::string& path);
// Reads every weight file of the directory: model.safetensors or pytorch_model.bin, or the shards
// their *.index.json lists.
Status LoadWeights(Checkpoint& ckpt, const std::string& dir);
// Reads the directory's tokenizer into ckpt.tokenizer, tokenizer_path and config.tokenizer_kind:
// tokenizer.model (SentencePiece) if present, else tokenizer.json (converted to the byte-level
// BPE blob, tokenizer_json.h). Call it after the config is read.
Status ReadTokenizer(Checkpoint& ckpt, const std::string& dir);

// HF Llama4ForCausalLM / llama4_text (MobileLLM-R1), by config.json's architecture or model_type.
bool IsLlama4(const std::string& architecture, const std::string& model_type);
// Reads a llama4_text config.json (llama4.cpp) as HF's Llama4TextConfig does, its defaults
// included, and refuses what the engine does not run (MoE layers, vision, attention biases, RoPE
// scaling other than llama3), naming it. `where` is the file, for messages.
Status ReadLlama4Config(const nlohmann::json& j, const std::string& where, ModelConfig* config);

// Parses safetensors bytes; exposed for tests and fuzzing.
Result<std::map<std::string, SourceTensor>> ParseSafetensors(const uint8_t* data, size_t size,
                                                             const std::string& where);
// Parses a torch.save zip archive; exposed for tests and fuzzing.
Result<std::map<std::string, SourceTensor>> ParseTorchZip(const uint8_t* data, size_t size,
                                                          const std::string& where);

// Our tensor name ("blk.3.ffn_up") -> its HuggingFace state-dict name
// ("model.layers.3.mlp.up_proj.weight").
std::string HfTensorName(const std::string& name, format::Arch arch = format::Arch::kMobileLlm);
// HF tensors a checkpoint may carry that the engine recomputes (RoPE inv_freq buffers).
bool IsIgnorableHfTensor(const std::string& hf_name);

// Writes src converted to `dtype` (row-major, contiguous) into dst.
void ConvertTensor(const SourceTensor& src, DType dtype, uint8_t* dst);

}  // namespace mobilellm::convert
