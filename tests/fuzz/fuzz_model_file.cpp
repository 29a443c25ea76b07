// Fuzzes the .mlm loader: any bytes must give a model or one error, never a crash or a read
// outside the mapping. Inputs are written to a memfd so the real mmap path runs.
//
// Seeds: tests/fuzz/corpus/fuzz_model_file/ (tiny real files of each dtype and layout, and the
// crash classes of issue 20); dictionary: fuzz_model_file.dict. The custom mutator knows where
// the header and entry fields are and sets them to boundary values (a byte-level mutator rarely
// writes a table offset that wraps when 128 * count is added to it).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "mobilellm/format.h"
#include "mobilellm/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz.mlm", 0);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
  auto file = mobilellm::ModelFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    // Touch every tensor the loader accepted, and run the checksums over them.
    uint64_t sum = 0;
    for (const auto* e : (*file)->entries()) {
      const std::string_view bytes = (*file)->Bytes(*e);
      for (char c : bytes) sum += uint8_t(c);
    }
    (void)(*file)->Verify();
    if (sum == 0xFFFFFFFFFFFFFFFFull) return 1;  // keep the loop
  }
  return 0;
}

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

struct Field {
  uint32_t offset, width;
};
// FileHeader: version, header_size, alignment, file_size, table_offset, tensor_count, entry_size,
// then the config record as 4-byte words.
constexpr Field kHeaderFields[] = {{4, 4},  {8, 4},  {12, 4}, {16, 8}, {24, 8}, {32, 4},
                                   {36, 4}, {40, 4}, {44, 4}, {48, 4}, {52, 4}, {56, 4},
                                   {60, 4}, {64, 4}, {68, 4}, {72, 4}, {76, 4}, {80, 4}};
// TensorEntry: dtype, layout, rank, reserved0, shape[4], offset, nbytes, crc32.
constexpr Field kEntryFields[] = {{48, 4}, {52, 4}, {56, 4}, {60, 4},  {64, 8},  {72, 8},
                                  {80, 8}, {88, 8}, {96, 8}, {104, 8}, {112, 4}};

uint64_t Read(const uint8_t* p, uint32_t width) {
  uint64_t v = 0;
  std::memcpy(&v, p, width);
  return v;
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  std::minstd_rand rng(seed);
  if (size < mobilellm::format::kHeaderSize || rng() % 3 == 0)
    return LLVMFuzzerMutate(data, size, max_size);
  const uint64_t table = Read(data + 24, 8), count = Read(data + 32, 4);
  const uint64_t entries_in_file =
      table < size ? (size - table) / mobilellm::format::kEntrySize : 0;
  // A header field, or a field of one of the entries that lie inside the input.
  Field f;
  const uint64_t n_entries = std::min(count, entries_in_file);
  if (n_entries == 0 || rng() % 4 == 0) {
    f = kHeaderFields[rng() % std::size(kHeaderFields)];
  } else {
    const Field e = kEntryFields[rng() % std::size(kEntryFields)];
    f = {uint32_t(table + (rng() % n_entries) * mobilellm::format::kEntrySize + e.offset), e.width};
  }
  const uint64_t old = Read(data + f.offset, f.width);
  const uint64_t candidates[] = {0,
                                 1,
                                 2,
                                 4,
                                 16,
                                 32,
                                 0x7FFFFFFF,
                                 0x80000000,
                                 0xFFFFFFFF,
                                 uint64_t(1) << 63,
                                 ~uint64_t(0),
                                 size,
                                 size - 1,
                                 size + 1,
                                 0 - count * mobilellm::format::kEntrySize + 512,  // wraps
                                 old + 1,
                                 old - 1,
                                 old * 2,
                                 old + 64,
                                 uint64_t(rng()) << 32 | rng()};
  const uint64_t v = candidates[rng() % std::size(candidates)];
  std::memcpy(data + f.offset, &v, f.width);  // little-endian, like the format
  // Often keep file_size honest, so mutations get past the truncation check.
  if (rng() % 2) {
    const uint64_t s = size;
    std::memcpy(data + 16, &s, 8);
  }
  return size;
}
