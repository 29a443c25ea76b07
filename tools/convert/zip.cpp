#include "zip.h"

#include <cstring>

namespace mobilellm::convert {

namespace {

uint16_t U16(const uint8_t* p) {
  return uint16_t(p[0] | p[1] << 8);
}
uint32_t U32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t U64(const uint8_t* p) {
  return uint64_t(U32(p)) | uint64_t(U32(p + 4)) << 32;
}

}  // namespace

Result<std::vector<ZipMember>> ReadZip(const uint8_t* data, uint64_t size,
                                       const std::string& where) {
  auto fail = [&](const std::string& what) {
    return Status::Error(where + ": corrupt zip archive: " + what);
  };
  if (size < 22) return fail("shorter than an end-of-central-directory record");
  // The EOCD record is the last 22 bytes plus a comment of up to 65535 bytes.
  int64_t eocd = -1;
  for (int64_t p = int64_t(size) - 22; p >= 0 && p >= int64_t(size) - 22 - 65535; --p) {
    if (std::memcmp(data + p, "PK\x05\x06", 4) == 0) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) return fail("no end-of-central-directory record");
  const uint8_t* e = data + eocd;
  uint64_t count = U16(e + 10), cd_size = U32(e + 12), cd_offset = U32(e + 16);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || std::memcmp(data + eocd - 20, "PK\x06\x07", 4) != 0)
      return fail("ZIP64 locator missing");
    const uint64_t z = U64(data + eocd - 20 + 8);
    if (z > size || size - z < 56 || std::memcmp(data + z, "PK\x06\x06", 4) != 0)
      return fail("ZIP64 end record out of range");
    count = U64(data + z + 32), cd_size = U64(data + z + 40), cd_offset = U64(data + z + 48);
  }
  if (cd_offset > size || cd_size > size - cd_offset)
    return fail("central directory lies outside the file");
  if (count > cd_size / 46) return fail("more entries than the central directory can hold");

  std::vector<ZipMember> members;
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_end - p < 46 || std::memcmp(data + p, "PK\x01\x02", 4) != 0)
      return fail("bad central directory entry");
    const uint8_t* c = data + p;
    const uint16_t method = U16(c + 10), name_len = U16(c + 28), extra_len = U16(c + 30),
                   comment_len = U16(c + 32);
    uint64_t csize = U32(c + 20), usize = U32(c + 24), local = U32(c + 42);
    if (cd_end - p < 46ull + name_len + extra_len + comment_len)
      return fail("central directory entry overruns");
    std::string name(reinterpret_cast<const char*>(c + 46), name_len);
    // ZIP64 extra field (id 1): 64-bit values for the fields saturated above, in this order.
    const uint8_t* x = c + 46 + name_len;
    for (uint32_t q = 0; q + 4 <= extra_len;) {
      const uint16_t id = U16(x + q), len = U16(x + q + 2);
      if (q + 4 + len > extra_len) return fail("bad extra field in '" + name + "'");
      if (id == 1) {
        uint32_t r = q + 4;
        auto take = [&](uint64_t* v) {
          if (*v != 0xFFFFFFFF) return true;
          if (r + 8 > q + 4u + len) return false;
          *v = U64(x + r), r += 8;
          return true;
        };
        if (!take(&usize) || !take(&csize) || !take(&local))
          return fail("short ZIP64 field in '" + name + "'");
      }
      q += 4 + len;
    }
    if (method != 0 || csize != usize)
      return fail("member '" + name + "' is compressed (method " + std::to_string(method) +
                  "); torch.save writes stored members");
    if (local > size || size - local < 30 || std::memcmp(data + local, "PK\x03\x04", 4) != 0)
      return fail("local header of '" + name + "' out of range");
    const uint64_t start = local + 30 + U16(data + local + 26) + U16(data + local + 28);
    if (start > size || usize > size - start)
      return fail("data of '" + name + "' lies outside the file");
    members.push_back({std::move(name), data + start, usize});
    p += 46ull + name_len + extra_len + comment_len;
  }
  return members;
}

}  // namespace mobilellm::convert
