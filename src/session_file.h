// The session file (Session::Save / Session::Load): a fixed header, the token ids, then the KV
// cache's prefix runs (KvCache::ForEachPrefixRun), all little-endian as the host writes them.
//
//   header (64 bytes, below) | int32 ids[n_tokens] | per (layer, KV head): key blocks, value rows
//
// The header names the model (a CRC-32 of its config record and tensor table, which holds every
// tensor's CRC-32: the model is identified without reading its weights), the cache geometry and
// type, and a CRC-32 of everything after it, so a flipped bit anywhere is refused.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kv_cache.h"
#include "mobilellm/mobilellm.h"

namespace mobilellm::session_file {

inline constexpr char kMagic[8] = {'M', 'L', 'M', 'S', 'E', 'S', 'S', '\0'};
inline constexpr uint32_t kVersion = 1;

struct Header {
  char magic[8];             // kMagic
  uint32_t version;          // kVersion
  uint32_t header_size;      // sizeof(Header)
  uint32_t model_crc;        // ModelChecksum
  uint32_t tensor_count;     // the model's
  uint64_t model_file_size;  // the model's
  uint32_t kv_type;          // DType: f16 or f32
  uint32_t n_layers, n_kv_heads, head_dim, key_block;
  uint32_t n_tokens;     // <= the loading session's n_ctx
  uint32_t payload_crc;  // CRC-32 of every byte after the header
  uint32_t reserved;     // zero
};
static_assert(sizeof(Header) == 64);

// CRC-32 of the model's config record and tensor table.
uint32_t ModelChecksum(const Model& model);

// The header `session` would write for its first n_tokens positions (payload_crc left 0).
Header MakeHeader(const Model& model, const KvCache& kv, uint32_t n_tokens);

// Checks `bytes` (the whole file `name`) against the model and cache that would load it: every
// field, the exact size and the payload checksum. On success *ids points at the n_tokens ids and
// *cache at the runs, inside `bytes`.
Status Parse(std::string_view bytes, const std::string& name, const Model& model, const KvCache& kv,
             uint32_t* n_tokens, const char** ids, const char** cache);

}  // namespace mobilellm::session_file
