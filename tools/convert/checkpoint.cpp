#include "checkpoint.h"

#include <sys/stat.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <type_traits>
#include <unordered_map>

#include "json_field.h"
#include "mobilellm/model_file.h"
#include "mobilellm/untrusted.h"
#include "pickle.h"
#include "tokenizer_json.h"
#include "zip.h"

namespace mobilellm::convert {

using nlohmann::json;

namespace {

constexpr uint64_t kMaxJsonBytes = 64ull << 20;  // config.json, *.index.json

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// The one way the converter parses JSON: `text` must be one object nested at most `max_depth`
// deep with at most kMaxJsonValues values, checked by a linear scan before the DOM is built (a
// DOM value costs ~50x its text: 20 MB of "{}," became 700 MB). Any other input, valid JSON or
// not, is the error "<what>".
constexpr size_t kMaxJsonValues = 1 << 20;

Result<json> ParseJson(std::string_view text, int max_depth, const std::string& what) {
  int depth = 0;
  size_t values = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // skip the escaped character
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth)
        return Status::Error(what + " (nested deeper than " + std::to_string(max_depth) + ")");
    } else if (c == '}' || c == ']') {
      --depth;
    }
    if ((c == '{' || c == '[' || c == ',') && ++values > kMaxJsonValues)
      return Status::Error(what + " (more than " + std::to_string(kMaxJsonValues) + " values)");
  }
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Error(what);
  return j;
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
  if (!InRange(8, n, size) || n > (100u << 20))
    return fail("header length does not fit in the file (" + std::to_string(size) +
                " bytes) or exceeds 100 MiB");
  // {name: {"dtype": ..., "shape": [...], "data_offsets": [...]}, "__metadata__": {...}}
  auto parsed = ParseJson(std::string_view(reinterpret_cast<const char*>(data + 8), n), 3,
                          where + ": bad safetensors file: header is not a JSON object of tensors");
  if (!parsed.ok()) return parsed.status();
  const json& header = *parsed;
  const uint64_t data_size = size - 8 - n;
  const uint8_t* base = data + 8 + n;
  std::map<std::string, SourceTensor> out;
  for (const auto& [key, t] : header.items()) {
    if (key == "__metadata__") continue;
    const std::string name = Printable(key), what = "tensor '" + name + "'";
    if (!t.is_object()) return fail(what + " is not an object");
    const std::string field_of = where + ": " + what;
    auto dt = JsonField<std::string>(t, "dtype", field_of);
    if (!dt.ok()) return dt.status();
    const auto shape = t.find("shape"), offsets = t.find("data_offsets");
    if (shape == t.end() || !shape->is_array() || offsets == t.end() || !offsets->is_array() ||
        offsets->size() != 2)
      return fail(what + " lacks a shape or a pair of data_offsets");
    SourceTensor s;
    s.file = where;
    if (*dt == "F32")
      s.dtype = DType::kF32;
    else if (*dt == "F16")
      s.dtype = DType::kF16;
    else if (*dt == "BF16")
      s.dtype = DType::kBF16;
    else
      return fail(what + " has dtype " + Printable(*dt) + " (supported: F32, F16, BF16)");
    uint64_t bytes = format::DTypeSize(uint32_t(s.dtype));
    if (shape->size() > format::kMaxRank) return fail(what + " has more than 4 dimensions");
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned() || !CheckedMul(bytes, d.get<uint64_t>(), &bytes) ||
          bytes > data_size)
        return fail(what + " has a bad shape or is larger than the file");
      s.shape.push_back(d.get<int64_t>());
    }
    const auto& off = *offsets;
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return fail(what + " has bad data_offsets");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e - b != bytes || !InRange(b, bytes, data_size))
      return fail(what + " data [" + std::to_string(b) + ", " + std::to_string(e) +
                  ") does not hold " + std::to_string(bytes) + " bytes inside the " +
                  std::to_string(data_size) + "-byte data section");
    s.strides = ContiguousStrides(s.shape);
    s.data = base + b;
    out[key] = std::move(s);
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
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8) + "data/";
  // Storages by key: one hash lookup per tensor (a scan per tensor was quadratic).
  std::unordered_map<std::string_view, const ZipMember*> storages;
  for (const ZipMember& m : *members) {
    if (m.name.compare(0, prefix.size(), prefix) != 0) continue;
    if (!storages.emplace(std::string_view(m.name).substr(prefix.size()), &m).second)
      return Status::Error(where + ": corrupt zip archive: member '" + Printable(m.name) +
                           "' appears twice");
  }
  auto pickled = UnpickleStateDict(pkl->data, pkl->size, where);
  if (!pickled.ok()) return pickled.status();

  std::map<std::string, SourceTensor> out;
  for (const auto& [key, pt] : *pickled) {
    const std::string name = "tensor '" + Printable(key) + "'";
    auto fail = [&](const std::string& what) { return Status::Error(where + ": " + name + what); };
    SourceTensor s;
    s.file = where;
    if (pt.storage_type == "FloatStorage")
      s.dtype = DType::kF32;
    else if (pt.storage_type == "HalfStorage")
      s.dtype = DType::kF16;
    else if (pt.storage_type == "BFloat16Storage")
      s.dtype = DType::kBF16;
    else
      return fail(" has storage type " + Printable(pt.storage_type) +
                  " (supported: float32, float16, bfloat16)");
    const uint64_t esize = format::DTypeSize(uint32_t(s.dtype));
    const auto it = storages.find(pt.storage_key);
    if (it == storages.end())
      return fail(": storage data/" + Printable(pt.storage_key) + " is missing from the archive");
    const ZipMember& storage = *it->second;
    uint64_t storage_bytes = 0;
    if (pt.storage_numel < 0 || !CheckedMul(uint64_t(pt.storage_numel), esize, &storage_bytes) ||
        storage_bytes > storage.size)
      return fail(": storage data/" + Printable(pt.storage_key) + " holds " +
                  std::to_string(storage.size) + " bytes, fewer than its " +
                  std::to_string(pt.storage_numel) + " elements");
    // Every element the view can reach must be inside the storage: the last one is
    // offset + sum((size - 1) * stride), computed without wrapping.
    int64_t last = pt.offset, numel = 1;
    bool ok = pt.offset >= 0 && pt.sizes.size() <= format::kMaxRank;
    for (size_t d = 0; ok && d < pt.sizes.size(); ++d) {
      const int64_t size = pt.sizes[d], stride = pt.strides[d];
      int64_t span = 0;
      ok = size >= 0 && stride >= 0 && CheckedMul(numel, size, &numel) &&
           (size == 0 || (CheckedMul(size - 1, stride, &span) && CheckedAdd(last, span, &last)));
    }
    if (!ok)
      return fail(" has a negative, huge or overflowing offset, size or stride, or rank above 4");
    if (numel > 0 && last >= pt.storage_numel)
      return fail(" reaches element " + std::to_string(last) + " of a storage of " +
                  std::to_string(pt.storage_numel));
    s.shape = pt.sizes;
    s.strides = pt.strides;
    s.data = storage.data + (numel > 0 ? uint64_t(pt.offset) * esize : 0);
    out[key] = std::move(s);
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
      return Status::Error(path + ": tensor '" + Printable(name) + "' also appears in " +
                           ckpt.tensors[name].file);
    ckpt.tensors[name] = std::move(t);
  }
  ckpt.weight_files.push_back(path);
  ckpt.files_.push_back(std::move(file).value());
  return {};
}

Status LoadWeights(Checkpoint& ckpt, const std::string& dir) {
  // Safetensors first, then torch zips; single files or shard indexes.
  std::vector<std::string> files;
  for (const char* stem : {"model.safetensors", "pytorch_model.bin"}) {
    if (Exists(dir + "/" + stem)) {
      files.push_back(dir + "/" + stem);
      break;
    }
    const std::string index = dir + "/" + stem + ".index.json";
    if (Exists(index)) {
      std::string text;
      MOBILELLM_RETURN_IF_ERROR(ReadFile(index, &text, kMaxJsonBytes));
      auto parsed = ParseJson(text, 16, index + ": not a valid JSON object");
      if (!parsed.ok()) return parsed.status();
      const json& ij = *parsed;
      const auto map = ij.find("weight_map");
      if (map == ij.end() || !map->is_object())
        return Status::Error(index + ": no \"weight_map\" object");
      std::set<std::string> shards;
      for (const auto& [name, file] : map->items()) {
        if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos ||
            file.get<std::string>().empty() || file.get<std::string>()[0] == '.')
          return Status::Error(index + ": bad shard file name for '" + Printable(name) + "'");
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
  for (const auto& f : files) MOBILELLM_RETURN_IF_ERROR(LoadWeightFile(ckpt, f));
  return {};
}

Status ReadTokenizer(Checkpoint& ckpt, const std::string& dir) {
  // SentencePiece's tokenizer.model, else HF's tokenizer.json (MobileLLM-R1, Llama-3).
  std::string tok_path = dir + "/tokenizer.model";
  if (!Exists(tok_path) && Exists(dir + "/tokenizer.json")) tok_path = dir + "/tokenizer.json";
  auto tok = ReadTokenizerFile(tok_path);
  if (!tok.ok()) return tok.status();
  ckpt.tokenizer = std::move(tok->bytes);
  ckpt.tokenizer_path = tok_path;
  ckpt.config.tokenizer_kind = tok->kind;
  return {};
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ckpt = std::make_unique<Checkpoint>();
  const std::string config_path = dir + "/config.json";
  std::string text;
  MOBILELLM_RETURN_IF_ERROR(ReadFile(config_path, &text, kMaxJsonBytes));
  auto parsed = ParseJson(text, 16, config_path + ": not a valid JSON object");
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;

  // "architectures" is a list of names; the first one is the model class.
  std::string arch;
  if (const auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || (!it->empty() && !(*it)[0].is_string()))
      return Status::Error(config_path + ": \"architectures\" must be a list of strings");
    if (!it->empty()) arch = (*it)[0].get<std::string>();
  }
  auto type = JsonField<std::string>(j, "model_type", config_path, std::string());
  if (!type.ok()) return type.status();
  if (IsLlama4(arch, *type)) {
    MOBILELLM_RETURN_IF_ERROR(ReadLlama4Config(j, config_path, &ckpt->config));
    MOBILELLM_RETURN_IF_ERROR(LoadWeights(*ckpt, dir));
    // Tied: HF points lm_head at the embedding, whatever lm_head.weight the files may hold.
    if (ckpt->config.tied_head) ckpt->tensors.erase("lm_head.weight");
    MOBILELLM_RETURN_IF_ERROR(ReadTokenizer(*ckpt, dir));
    return ckpt;
  }
  static const std::set<std::string> kArchs = {"MobileLLMForCausalLM", "LlamaForCausalLM"};
  static const std::set<std::string> kTypes = {"mobilellm", "llama"};
  if (!(arch.empty() ? kTypes.count(*type) : kArchs.count(arch)))
    return Status::Error(config_path + ": unsupported architecture '" +
                         Printable(arch.empty() ? *type : arch) +
                         "' (expected MobileLLMForCausalLM or LlamaForCausalLM)");

  auto get_int = [&](const char* key, int fallback, bool required) -> Result<int> {
    if (const auto it = j.find(key); !required && (it == j.end() || it->is_null()))
      return fallback;  // -1: derived below
    const json* obj = &j;
    json first;  // eos_token_id may be a list: its first id
    if (const auto it = j.find(key); it != j.end() && it->is_array() && !it->empty()) {
      first = json::object({{key, (*it)[0]}});
      obj = &first;
    }
    auto v = JsonField<int64_t>(*obj, key, config_path);
    if (!v.ok()) return v.status();
    if (*v < 0 || *v > (1 << 30))
      return Status::Error(config_path + ": \"" + key + "\" must be in [0, 2^30], found " +
                           std::to_string(*v));
    return int(*v);
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
  auto eps = JsonField<double>(j, "rms_norm_eps", config_path, 1e-6);
  auto theta = JsonField<double>(j, "rope_theta", config_path, 10000.0);
  if (!eps.ok()) return eps.status();
  if (!theta.ok()) return theta.status();
  c.norm_eps = float(*eps), c.rope_theta = float(*theta);
  c.rope_style = format::RopeStyle::kHalf;  // HF checkpoints: rotate_half, weights used as stored
  if (const auto it = j.find("rope_scaling"); it != j.end() && !it->is_null())
    return Status::Error(config_path + ": rope_scaling is not supported (MobileLLM uses none)");
  auto layer_sharing = JsonField<bool>(j, "layer_sharing", config_path, false);
  auto share_embedding = JsonField<bool>(j, "share_embedding", config_path, false);
  auto tie = JsonField<bool>(j, "tie_word_embeddings", config_path, false);
  for (const auto* r : {&layer_sharing, &share_embedding, &tie})
    if (!r->ok()) return r->status();
  c.n_repeat = *layer_sharing ? 2 : 1;
  const bool share = *share_embedding || *tie;

  MOBILELLM_RETURN_IF_ERROR(LoadWeights(*ckpt, dir));

  c.tied_head = !ckpt->tensors.count("lm_head.weight");
  if (c.tied_head && !share)
    return Status::Error(dir +
                         ": no lm_head.weight, and config.json ties no embeddings (share_embedding "
                         "/ tie_word_embeddings)");

  MOBILELLM_RETURN_IF_ERROR(ReadTokenizer(*ckpt, dir));
  return ckpt;
}

// Our tensor names -> HF state-dict names.
std::string HfTensorName(const std::string& name, format::Arch arch) {
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
  for (const auto& [ours, hf] : kMap) {
    if (leaf != ours) continue;
    // Llama4TextDecoderLayer names its dense MLP feed_forward.
    if (arch == format::Arch::kLlama4Text && std::strncmp(hf, "mlp.", 4) == 0)
      return block + "feed_forward." + (hf + 4);
    return block + hf;
  }
  return name;
}

bool IsIgnorableHfTensor(const std::string& hf_name) {
  return hf_name.find("rotary_emb.inv_freq") !=
         std::string::npos;  // older HF checkpoints store RoPE buffers
}

void ConvertTensor(const SourceTensor& src, DType dtype, uint8_t* dst) {
  const int64_t n = src.numel();
  if (n == 0) return;  // an empty tensor may have no data at all: memcpy(nullptr, ...) is undefined
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
