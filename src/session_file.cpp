// The session file's header and its checks (session_file.h).
#include "session_file.h"

#include <cstring>

#include "mobilellm/untrusted.h"

namespace mobilellm::session_file {

uint32_t ModelChecksum(const Model& model) {
  const ModelFile& f = model.file();
  uint32_t crc = Crc32(&f.header().config, sizeof(f.header().config));
  for (const format::TensorEntry* e : f.entries()) crc = Crc32(e, sizeof(*e), crc);
  return crc;
}

Header MakeHeader(const Model& model, const KvCache& kv, uint32_t n_tokens) {
  const ModelConfig& c = model.config();
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.header_size = sizeof(Header);
  h.model_crc = ModelChecksum(model);
  h.tensor_count = uint32_t(model.file().entries().size());
  h.model_file_size = model.file().header().file_size;
  h.kv_type = uint32_t(kv.type());
  h.n_layers = uint32_t(c.n_layers());
  h.n_kv_heads = uint32_t(c.n_kv_heads);
  h.head_dim = uint32_t(c.head_dim);
  h.key_block = uint32_t(kKeyBlock);
  h.n_tokens = n_tokens;
  return h;
}

Status Parse(std::string_view bytes, const std::string& name, const Model& model, const KvCache& kv,
             uint32_t* n_tokens, const char** ids, const char** cache) {
  const auto error = [&](const std::string& what) { return Status::Error(name + ": " + what); };
  Header h;
  if (bytes.size() < sizeof(h.magic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0)
    return error("not a mobilellm session file (no MLMSESS magic)");
  if (bytes.size() < sizeof(h))
    return error("truncated: " + std::to_string(bytes.size()) + " bytes, less than the " +
                 std::to_string(sizeof(h)) + "-byte header");
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (h.version != kVersion)
    return error("session file version " + std::to_string(h.version) + ", this build reads " +
                 std::to_string(kVersion));
  if (h.header_size != sizeof(h) || h.reserved != 0 || h.key_block != uint32_t(kKeyBlock))
    return error("corrupt header");
  const Header want = MakeHeader(model, kv, h.n_tokens);
  if (h.model_crc != want.model_crc || h.tensor_count != want.tensor_count ||
      h.model_file_size != want.model_file_size || h.n_layers != want.n_layers ||
      h.n_kv_heads != want.n_kv_heads || h.head_dim != want.head_dim)
    return error("saved for a different model (checksum " + std::to_string(h.model_crc) +
                 ", this model's is " + std::to_string(want.model_crc) + ")");
  if (h.kv_type != want.kv_type) {
    const bool known = h.kv_type == uint32_t(DType::kF16) || h.kv_type == uint32_t(DType::kF32);
    return error(std::string("saved with a ") +
                 (known ? (h.kv_type == uint32_t(DType::kF16) ? "f16" : "f32") : "unknown") +
                 " KV cache, this session's is " + (kv.type() == DType::kF16 ? "f16" : "f32"));
  }
  if (h.n_tokens > uint32_t(kv.n_ctx()))
    return error(std::to_string(h.n_tokens) + " tokens do not fit this session's context of " +
                 std::to_string(kv.n_ctx()) + " (use a context of at least " +
                 std::to_string(h.n_tokens) + ")");
  uint64_t id_bytes = 0, cache_bytes = 0, total = 0;
  if (!CheckedMul<uint64_t>(h.n_tokens, 4, &id_bytes) ||
      !kv.PrefixBytes(h.n_tokens, &cache_bytes) ||
      !CheckedAdd<uint64_t>(id_bytes, cache_bytes, &total) ||
      !CheckedAdd<uint64_t>(total, sizeof(h), &total))
    return error("corrupt header (sizes overflow)");
  if (bytes.size() < total)
    return error("truncated: " + std::to_string(bytes.size()) + " bytes, " +
                 std::to_string(h.n_tokens) + " tokens need " + std::to_string(total));
  if (bytes.size() > total)
    return error(std::to_string(bytes.size() - total) + " bytes after the end of the session");
  if (Crc32(bytes.data() + sizeof(h), bytes.size() - sizeof(h)) != h.payload_crc)
    return error("corrupt (checksum mismatch)");
  const char* p = bytes.data() + sizeof(h);
  for (uint32_t i = 0; i < h.n_tokens; ++i) {
    int32_t id;
    std::memcpy(&id, p + size_t(i) * 4, 4);
    if (id < 0 || id >= model.config().vocab_size)
      return error("token " + std::to_string(i) + " has id " + std::to_string(id) +
                   ", outside the vocabulary");
  }
  *n_tokens = h.n_tokens;
  *ids = p;
  *cache = p + id_bytes;
  return {};
}

}  // namespace mobilellm::session_file
