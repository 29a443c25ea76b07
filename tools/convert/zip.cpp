#include "zip.h"

#include <cstring>

#include "mobilellm/untrusted.h"

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
  // True if `n` bytes at `at` are inside the archive and start with the 4-byte `signature`.
  auto record = [&](uint64_t at, uint64_t n, const char* signature) {
    return InRange(at, n, size) && std::memcmp(data + at, signature, 4) == 0;
  };
  if (size < 22) return fail("shorter than an end-of-central-directory record");
  // The EOCD record is the last 22 bytes plus a comment of up to 65535 bytes.
  uint64_t eocd = size;
  for (uint64_t back = 22; back <= size && back <= 22 + 65535; ++back) {
    if (record(size - back, 22, "PK\x05\x06")) {
      eocd = size - back;
      break;
    }
  }
  if (eocd == size) return fail("no end-of-central-directory record");
  const uint8_t* e = data + eocd;
  uint64_t count = U16(e + 10), cd_size = U32(e + 12), cd_offset = U32(e + 16);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || !record(eocd - 20, 20, "PK\x06\x07")) return fail("ZIP64 locator missing");
    const uint64_t z = U64(data + eocd - 20 + 8);
    if (!record(z, 56, "PK\x06\x06")) return fail("ZIP64 end record out of range");
    count = U64(data + z + 32), cd_size = U64(data + z + 40), cd_offset = U64(data + z + 48);
  }
  uint64_t cd_end = 0;
  if (!RangeWithin(cd_offset, cd_size, 1, size, &cd_end))
    return fail("central directory lies outside the file");
  if (count > cd_size / 46) return fail("more entries than the central directory can hold");

  std::vector<ZipMember> members;
  members.reserve(count);
  uint64_t p = cd_offset;
  for (uint64_t i = 0; i < count; ++i) {
    if (!InRange(p, 46, cd_end) || !record(p, 46, "PK\x01\x02"))
      return fail("bad central directory entry");
    const uint8_t* c = data + p;
    const uint16_t method = U16(c + 10), name_len = U16(c + 28), extra_len = U16(c + 30),
                   comment_len = U16(c + 32);
    uint64_t csize = U32(c + 20), usize = U32(c + 24), local = U32(c + 42);
    const uint64_t entry_size = 46ull + name_len + extra_len + comment_len;
    if (!InRange(p, entry_size, cd_end)) return fail("central directory entry overruns");
    std::string name(reinterpret_cast<const char*>(c + 46), name_len);
    // ZIP64 extra field (id 1): 64-bit values for the fields saturated above, in this order.
    const uint8_t* x = c + 46 + name_len;
    for (uint32_t q = 0; InRange(q, 4, extra_len);) {
      const uint16_t id = U16(x + q), len = U16(x + q + 2);
      if (!InRange(q + 4, len, extra_len))
        return fail("bad extra field in '" + Printable(name) + "'");
      if (id == 1) {
        uint32_t r = q + 4;
        auto take = [&](uint64_t* v) {
          if (*v != 0xFFFFFFFF) return true;
          if (!InRange(r, 8, q + 4u + len)) return false;
          *v = U64(x + r), r += 8;
          return true;
        };
        if (!take(&usize) || !take(&csize) || !take(&local))
          return fail("short ZIP64 field in '" + Printable(name) + "'");
      }
      q += 4 + len;
    }
    if (method != 0 || csize != usize)
      return fail("member '" + Printable(name) + "' is compressed (method " +
                  std::to_string(method) + "); torch.save writes stored members");
    if (!record(local, 30, "PK\x03\x04"))
      return fail("local header of '" + Printable(name) + "' out of range");
    const uint64_t start = local + 30 + U16(data + local + 26) + U16(data + local + 28);
    if (!InRange(start, usize, size))
      return fail("data of '" + Printable(name) + "' lies outside the file");
    members.push_back({std::move(name), data + start, usize});
    p += entry_size;
  }
  return members;
}

}  // namespace mobilellm::convert
