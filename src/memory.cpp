// 2 MiB-aligned mappings advised for transparent huge pages (memory.h).
#include "mobilellm/memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <string>

namespace mobilellm {

namespace {

// Maps size + 2 MiB of anonymous memory with `prot` and returns the 2 MiB-aligned address inside
// it (nullptr on failure); *area is the whole mapping, to trim or release.
uint8_t* MapAnonymousAligned(size_t size, int prot, void** area) {
  *area = ::mmap(nullptr, size + kHugePage, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (*area == MAP_FAILED) return nullptr;
  uint8_t* lo = static_cast<uint8_t*>(*area);
  return lo + (kHugePage - reinterpret_cast<uintptr_t>(lo) % kHugePage) % kHugePage;
}

void Advise(void* p, size_t size, bool huge) {
#if defined(MADV_HUGEPAGE) && defined(MADV_NOHUGEPAGE)
  ::madvise(p, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);  // advice: failure = 4 KiB pages
#else
  (void)p, (void)size, (void)huge;
#endif
}

}  // namespace

void* MapFileHugeAligned(int fd, uint64_t size) {
  void* area;  // a PROT_NONE reservation, replaced by the file mapping at its aligned address
  uint8_t* at = MapAnonymousAligned(size_t(size), PROT_NONE, &area);
  if (!at) return ::mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd, 0);
  void* map = ::mmap(at, size_t(size), PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  uint8_t* const lo = static_cast<uint8_t*>(area);
  if (map == MAP_FAILED) {
    ::munmap(area, size_t(size) + kHugePage);
    return map;
  }
  // Give back the reservation on both sides of the mapping.
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t head = size_t(at - lo), end = head + (size_t(size) + page - 1) / page * page;
  if (head > 0) ::munmap(lo, head);
  if (end < size_t(size) + kHugePage) ::munmap(lo + end, size_t(size) + kHugePage - end);
  Advise(map, size_t(size), true);
  return map;
}

uint64_t HugePageBytes(const void* p, size_t size) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + size;
  uint64_t kib = 0;
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    unsigned long long start, end;
    char dash;
    std::istringstream header(line);
    if (line.find(':') > line.find(' ') && header >> std::hex >> start >> dash >> end &&
        dash == '-') {  // "start-end perms offset dev inode path" opens a mapping's block
      inside = start < hi && end > lo;
      continue;
    }
    if (!inside) continue;
    for (const char* field : {"FilePmdMapped:", "AnonHugePages:"}) {
      if (line.rfind(field, 0) == 0)
        kib += std::strtoull(line.c_str() + std::strlen(field), nullptr, 10);
    }
  }
  return kib * 1024;
}

PageBuffer::PageBuffer(size_t size, bool huge) : size_(size) {
  const size_t whole_pages = (size + kHugePage - 1) / kHugePage * kHugePage;
  void* area;
  data_ = MapAnonymousAligned(whole_pages, PROT_READ | PROT_WRITE, &area);
  if (!data_) throw std::bad_alloc();
  map_ = static_cast<uint8_t*>(area);
  map_size_ = whole_pages + kHugePage;
  Advise(data_, whole_pages, huge);
}

PageBuffer::~PageBuffer() {
  if (map_) ::munmap(map_, map_size_);
}

}  // namespace mobilellm
