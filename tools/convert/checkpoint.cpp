#include "checkpoint.h"

#include <sys/stat.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "mobilellm/model_file.h"
#include "pickle.h"
#include "zip.h"

namespace mobilellm::convert {

using nlohmann::json;

namespace {

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int i = int(shape.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

}  // namespace

Result<std::map<std::string, SourceTensor>> ParseSafetensors(const uint8_t* data, size_t size,
                                                             const std::string& where) {
  auto fail = [&](const std::string& what) {
    return Status::Error(where + ": bad safetensors file: " + what);
  };
  if (size < 8) return fail("shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(data[i]) << (8 * i);
  if (n > size - 8 || n > (100u << 20))
    return fail("header length " + std::to_string(n) + " exceeds the file");
  const json header = json::parse(data + 8, data + 8 + n, nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return fail("header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  const uint8_t* base = data + 8 + n;
  std::map<std::string, SourceTensor> out;
  for (const auto& [name, t] : header.items()) {
    if (name == "__metadata__") continue;
    if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
        !t["shape"].is_array() || !t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2)
      return fail("tensor '" + name + "' lacks dtype, shape or data_offsets");
    const std::string dt = t["dtype"];
    SourceTensor s;
    s.file = where;
    if (dt == "F32")
      s.dtype = DType::kF32;
    else if (dt == "F16")
      s.dtype = DType::kF16;
    else if (dt == "BF16")
      s.dtype = DType::kBF16;
    else
      return fail("tensor '" + name + "' has dtype " + dt + " (supported: F32, F16, BF16)");
    uint64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40))
        return fail("tensor '" + name + "' has a bad shape");
      s.shape.push_back(d.get<int64_t>());
      numel *= d.get<uint64_t>();
      if (numel > (1ull << 40)) return fail("tensor '" + name + "' is impossibly large");
    }
    const auto& off = t["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return fail("tensor '" + name + "' has bad data_offsets");
    const uint64_t b = off[0], e = off[1];
    const uint64_t want = numel * format::DTypeSize(uint32_t(s.dtype));
    if (b > e || e > data_size || e - b != want)
      return fail("tensor '" + name + "' data [" + std::to_string(b) + ", " + std::to_string(e) +
                  ") does not hold " + std::to_string(want) + " bytes inside the " +
                  std::to_string(data_size) + "-byte data section");
    s.strides = ContiguousStrides(s.shape);
    s.data = base + b;
    out[name] = std::move(s);
  }
  return out;
}

Result<std::map<std::string, SourceTensor>> ParseTorchZip(const uint8_t* data, size_t size,
                                                          const std::string& where) {
  if (size >= 2 && data[0] == 0x80 && data[1] <= 5)
    return Status::Error(where +
                         ": legacy (pre-1.6, non-zip) torch.save format is not supported; re-save "
                         "it with a current PyTorch");
  auto members = ReadZip(data, size, where);
  if (!members.ok()) return members.status();
  const ZipMember* pkl = nullptr;
  for (const ZipMember& m : *members) {
    if (m.name.size() >= 8 && m.name.compare(m.name.size() - 8, 8, "data.pkl") == 0) {
      pkl = &m;
      break;
    }
  }
  if (!pkl)
    return Status::Error(where + ": no data.pkl in the archive: not a torch.save checkpoint");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);
  auto pickled = UnpickleStateDict(pkl->data, pkl->size, where);
  if (!pickled.ok()) return pickled.status();

  std::map<std::string, SourceTensor> out;
  for (const auto& [name, pt] : *pickled) {
    SourceTensor s;
    s.file = where;
    if (pt.storage_type == "FloatStorage")
      s.dtype = DType::kF32;
    else if (pt.storage_type == "HalfStorage")
      s.dtype = DType::kF16;
    else if (pt.storage_type == "BFloat16Storage")
      s.dtype = DType::kBF16;
    else
      return Status::Error(where + ": tensor '" + name + "' has storage type " + pt.storage_type +
                           " (supported: float32, float16, bfloat16)");
    const size_t esize = format::DTypeSize(uint32_t(s.dtype));
    const ZipMember* storage = nullptr;
    for (const ZipMember& m : *members)
      if (m.name == prefix + "data/" + pt.storage_key) storage = &m;
    if (!storage)
      return Status::Error(where + ": tensor '" + name + "': storage data/" + pt.storage_key +
                           " is missing from the archive");
    if (pt.storage_numel < 0 || uint64_t(pt.storage_numel) > storage->size / esize)
      return Status::Error(where + ": tensor '" + name + "': storage data/" + pt.storage_key +
                           " holds " + std::to_string(storage->size) + " bytes, fewer than its " +
                           std::to_string(pt.storage_numel) + " elements");
    // Every element the view can reach must be inside the storage.
    int64_t last = pt.offset;
    bool empty = false;
    for (size_t d = 0; d < pt.sizes.size(); ++d) {
      if (pt.sizes[d] < 0 || pt.strides[d] < 0 || pt.sizes[d] > (int64_t(1) << 40) ||
          pt.strides[d] > (int64_t(1) << 40))
        return Status::Error(where + ": tensor '" + name +
                             "' has a negative or huge size or stride");
      if (pt.sizes[d] == 0)
        empty = true;
      else
        last += (pt.sizes[d] - 1) * pt.strides[d];
    }
    if (pt.offset < 0 || (!empty && last >= pt.storage_numel))
      return Status::Error(where + ": tensor '" + name + "' reaches element " +
                           std::to_string(last) + " of a storage of " +
                           std::to_string(pt.storage_numel));
    s.shape = pt.sizes;
    s.strides = pt.strides;
    s.data = storage->data + pt.offset * esize;
    out[name] = std::move(s);
  }
  return out;
}

Status LoadWeightFile(Checkpoint& ckpt, const std::string& path) {
  auto file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  const MappedFile& f = **file;
  const bool st = path.size() >= 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0;
  auto tensors =
      st ? ParseSafetensors(f.data(), f.size(), path) : ParseTorchZip(f.data(), f.size(), path);
  if (!tensors.ok()) return tensors.status();
  for (auto& [name, t] : *tensors) {
    if (ckpt.tensors.count(name))
      return Status::Error(path + ": tensor '" + name + "' also appears in " +
                           ckpt.tensors[name].file);
    ckpt.tensors[name] = std::move(t);
  }
  ckpt.weight_files.push_back(path);
  ckpt.files_.push_back(std::move(file).value());
  return {};
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ckpt = std::make_unique<Checkpoint>();
  const std::string config_path = dir + "/config.json";
  std::string text;
  if (!ReadFile(config_path, &text))
    return Status::Error(config_path + ": missing (expected a HuggingFace checkpoint directory)");
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return Status::Error(config_path + ": not valid JSON");

  std::string arch = j.contains("architectures") && j["architectures"].is_array() &&
                             !j["architectures"].empty() && j["architectures"][0].is_string()
                         ? j["architectures"][0].get<std::string>()
                         : "";
  const std::string type = j.value("model_type", std::string());
  static const std::set<std::string> kArchs = {"MobileLLMForCausalLM", "LlamaForCausalLM"};
  static const std::set<std::string> kTypes = {"mobilellm", "llama"};
  if (!(arch.empty() ? kTypes.count(type) : kArchs.count(arch)))
    return Status::Error(config_path + ": unsupported architecture '" +
                         (arch.empty() ? type : arch) +
                         "' (expected MobileLLMForCausalLM or LlamaForCausalLM)");

  auto get_int = [&](const char* key, int fallback, bool required) -> Result<int> {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) return Status::Error(config_path + ": missing \"" + key + "\"");
      return fallback;
    }
    const json& v =
        j[key].is_array() && !j[key].empty() ? j[key][0] : j[key];  // eos_token_id may be a list
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 30))
      return Status::Error(config_path + ": \"" + key + "\" must be a non-negative integer");
    return v.get<int>();
  };
  ModelConfig& c = ckpt->config;
  struct Field {
    const char* key;
    int* dst;
    int fallback;
    bool required;
  } fields[] = {{"vocab_size", &c.vocab_size, 0, true},
                {"hidden_size", &c.dim, 0, true},
                {"intermediate_size", &c.ffn_dim, 0, true},
                {"num_hidden_layers", &c.n_blocks, 0, true},
                {"num_attention_heads", &c.n_heads, 0, true},
                {"num_key_value_heads", &c.n_kv_heads, -1, false},
                {"max_position_embeddings", &c.n_ctx, 2048, false},
                {"bos_token_id", &c.bos_id, 1, false},
                {"eos_token_id", &c.eos_id, 2, false},
                {"head_dim", &c.head_dim, -1, false}};
  for (const Field& f : fields) {
    auto v = get_int(f.key, f.fallback, f.required);
    if (!v.ok()) return v.status();
    *f.dst = *v;
  }
  if (c.n_kv_heads < 0) c.n_kv_heads = c.n_heads;
  if (c.head_dim < 0) c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  auto get_float = [&](const char* key, double fallback) -> Result<float> {
    if (!j.contains(key) || j[key].is_null()) return float(fallback);
    if (!j[key].is_number())
      return Status::Error(config_path + ": \"" + key + "\" must be a number");
    return j[key].get<float>();
  };
  auto eps = get_float("rms_norm_eps", 1e-6), theta = get_float("rope_theta", 10000.0);
  if (!eps.ok()) return eps.status();
  if (!theta.ok()) return theta.status();
  c.norm_eps = *eps, c.rope_theta = *theta;
  c.rope_style = format::RopeStyle::kHalf;  // HF checkpoints: rotate_half, weights used as stored
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    return Status::Error(config_path + ": rope_scaling is not supported (MobileLLM uses none)");
  const bool layer_sharing = j.value("layer_sharing", false);
  c.n_repeat = layer_sharing ? 2 : 1;
  const bool share = j.value("share_embedding", false) || j.value("tie_word_embeddings", false);

  // Weights: safetensors first, then torch zips; single files or shard indexes.
  std::vector<std::string> files;
  for (const char* stem : {"model.safetensors", "pytorch_model.bin"}) {
    if (Exists(dir + "/" + stem)) {
      files.push_back(dir + "/" + stem);
      break;
    }
    const std::string index = dir + "/" + stem + ".index.json";
    if (Exists(index)) {
      if (!ReadFile(index, &text)) return Status::Error(index + ": cannot read");
      const json ij = json::parse(text, nullptr, false);
      if (!ij.is_object() || !ij.contains("weight_map") || !ij["weight_map"].is_object())
        return Status::Error(index + ": no \"weight_map\" object");
      std::set<std::string> shards;
      for (const auto& [name, file] : ij["weight_map"].items()) {
        if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
          return Status::Error(index + ": bad shard file name for '" + name + "'");
        shards.insert(file.get<std::string>());
      }
      for (const auto& s : shards) files.push_back(dir + "/" + s);
      break;
    }
  }
  if (files.empty())
    return Status::Error(dir +
                         ": no weights: expected model.safetensors or pytorch_model.bin (or a "
                         "sharded *.index.json set)");
  for (const auto& f : files) MOBILELLM_RETURN_IF_ERROR(LoadWeightFile(*ckpt, f));

  c.tied_head = !ckpt->tensors.count("lm_head.weight");
  if (c.tied_head && !share)
    return Status::Error(dir +
                         ": no lm_head.weight, and config.json ties no embeddings (share_embedding "
                         "/ tie_word_embeddings)");

  const std::string tok_path = dir + "/tokenizer.model";
  if (!ReadFile(tok_path, &ckpt->tokenizer))
    return Status::Error(tok_path + ": missing (expected the SentencePiece model)");
  return ckpt;
}

// Our tensor names -> HF state-dict names.
std::string HfTensorName(const std::string& name) {
  if (name == "token_embd") return "model.embed_tokens.weight";
  if (name == "output_norm") return "model.norm.weight";
  if (name == "output") return "lm_head.weight";
  const size_t dot = name.find('.', 4);
  const std::string block = "model.layers." + name.substr(4, dot - 4) + ".",
                    leaf = name.substr(dot + 1);
  static const std::pair<const char*, const char*> kMap[] = {
      {"attn_norm", "input_layernorm.weight"}, {"attn_q", "self_attn.q_proj.weight"},
      {"attn_k", "self_attn.k_proj.weight"},   {"attn_v", "self_attn.v_proj.weight"},
      {"attn_o", "self_attn.o_proj.weight"},   {"ffn_norm", "post_attention_layernorm.weight"},
      {"ffn_gate", "mlp.gate_proj.weight"},    {"ffn_up", "mlp.up_proj.weight"},
      {"ffn_down", "mlp.down_proj.weight"}};
  for (const auto& [ours, hf] : kMap)
    if (leaf == ours) return block + hf;
  return name;
}

bool IsIgnorableHfTensor(const std::string& hf_name) {
  return hf_name.find("rotary_emb.inv_freq") !=
         std::string::npos;  // older HF checkpoints store RoPE buffers
}

void ConvertTensor(const SourceTensor& src, DType dtype, uint8_t* dst) {
  const int64_t n = src.numel();
  const size_t esize = format::DTypeSize(uint32_t(dtype));
  if (src.dtype == dtype && src.strides == ContiguousStrides(src.shape)) {
    std::memcpy(dst, src.data, size_t(n) * esize);
    return;
  }
  const size_t rank = src.shape.size();
  std::vector<int64_t> idx(rank, 0);
  int64_t off = 0;  // element offset of idx in the source
  for (int64_t i = 0; i < n; ++i) {
    float v;
    switch (src.dtype) {
      case DType::kF32:
        std::memcpy(&v, src.data + off * 4, 4);
        break;
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, src.data + off * 2, 2);
        v = F16ToF32(h);
        break;
      }
      default: {
        uint16_t b;
        std::memcpy(&b, src.data + off * 2, 2);
        v = BF16ToF32(b);
      }
    }
    if (dtype == DType::kF32) {
      std::memcpy(dst + i * 4, &v, 4);
    } else {
      const uint16_t h = dtype == DType::kF16 ? F32ToF16(v) : F32ToBF16(v);
      std::memcpy(dst + i * 2, &h, 2);
    }
    for (int d = int(rank) - 1; d >= 0; --d) {  // advance the row-major index
      off += src.strides[d];
      if (++idx[d] < src.shape[d]) break;
      off -= src.strides[d] * src.shape[d];
      idx[d] = 0;
    }
  }
}

}  // namespace mobilellm::convert
