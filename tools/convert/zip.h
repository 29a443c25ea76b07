// A read-only ZIP reader for the archives torch.save writes: stored (uncompressed) members,
// with ZIP64 records for large files. Member data is returned as views into the caller's buffer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/status.h"

namespace mobilellm::convert {

struct ZipMember {
  std::string name;
  const uint8_t* data;  // inside the archive buffer
  uint64_t size;
};

// Parses the central directory of the archive in [data, data + size). `where` names it in errors.
// Fails on anything out of range, and on compressed members (torch.save never compresses).
Result<std::vector<ZipMember>> ReadZip(const uint8_t* data, uint64_t size,
                                       const std::string& where);

}  // namespace mobilellm::convert
