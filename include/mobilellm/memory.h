// Memory the decoder streams through: 2 MiB-aligned and, where the kernel gives them, on
// transparent huge pages (Linux THP, `madvise` mode or `always`).
//
// Why it matters: decode reads every weight once per token, and on 4 KiB pages the hardware
// prefetchers stop at each page boundary while physically scattered pages break up the stream.
// Measured on a Zen 4 core (bench/bandwidth, 76 MiB): 21-25 GB/s over 4 KiB pages, 29-35 GB/s
// over 2 MiB pages. Elsewhere (no THP, other OSes) the advice is ignored and these
// are plain page-aligned mappings.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mobilellm {

constexpr size_t kHugePage = size_t(2) << 20;

// Maps `size` bytes of the file `fd` read-only and private, at a 2 MiB-aligned address, advised
// MADV_HUGEPAGE. Zero-copy: the pages are the page cache's. They are 2 MiB pages where the page
// cache holds the file in 2 MiB folios (Linux >= 6.16 on ext4 and other large-folio filesystems:
// readahead for an advised mapping makes them, as do 2 MiB writes like ModelWriter's). Returns
// MAP_FAILED with errno set on failure; release with munmap(ptr, size).
void* MapFileHugeAligned(int fd, uint64_t size);

// Bytes of the mappings overlapping [p, p + size) that are mapped by 2 MiB pages right now (file
// or anonymous), from /proc/self/smaps; 0 where that is unavailable. Pages map lazily, so ask
// after they were touched. Reads procfs: for diagnostics (generate -v, bench), not hot paths.
uint64_t HugePageBytes(const void* p, size_t size);

// An anonymous, zero-filled, 2 MiB-aligned buffer, faulted in on first touch. With huge = true
// it is advised MADV_HUGEPAGE; with false, MADV_NOHUGEPAGE (4 KiB pages, for comparisons).
// Throws std::bad_alloc when the mapping fails.
class PageBuffer {
 public:
  explicit PageBuffer(size_t size, bool huge = true);
  ~PageBuffer();
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* map_ = nullptr;  // the mapping: size_ rounded up to 2 MiB, plus 2 MiB of slack
  uint8_t* data_ = nullptr;
  size_t size_ = 0, map_size_ = 0;
};

}  // namespace mobilellm
