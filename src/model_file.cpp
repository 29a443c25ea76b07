// ModelFile (mmap + validation) and ModelWriter (atomic writes) for the .mlm format (format.h).
#include "mobilellm/model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <unordered_set>

#include "mobilellm/memory.h"
#include "mobilellm/untrusted.h"

namespace mobilellm {

using format::FileHeader;
using format::TensorEntry;

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  std::vector<TensorSpec> t;
  const int64_t d = c.dim, f = c.ffn_dim;
  t.push_back({"token_embd", {c.vocab_size, d}, false});
  for (int b = 0; b < c.n_blocks; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    t.push_back({p + "attn_norm", {d}, true});
    t.push_back({p + "attn_q", {c.q_dim(), d}, false});
    t.push_back({p + "attn_k", {c.kv_dim(), d}, false});
    t.push_back({p + "attn_v", {c.kv_dim(), d}, false});
    t.push_back({p + "attn_o", {d, c.q_dim()}, false});
    t.push_back({p + "ffn_norm", {d}, true});
    t.push_back({p + "ffn_gate", {f, d}, false});
    t.push_back({p + "ffn_up", {f, d}, false});
    t.push_back({p + "ffn_down", {d, f}, false});
  }
  t.push_back({"output_norm", {d}, true});
  if (!c.tied_head) t.push_back({"output", {c.vocab_size, d}, false});
  return t;
}

namespace {

std::string ShapeString(const uint64_t* shape, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// What a file that is not .mlm looks like, to say what it is.
std::string Identify(const uint8_t* p, uint64_t n) {
  if (n >= 4 && std::memcmp(p, "GGUF", 4) == 0)
    return " (is this a GGUF file? mobilellm reads .mlm files: convert the HF checkpoint with "
           "mobilellm-convert)";
  if (n >= 4 && std::memcmp(p, "PK\x03\x04", 4) == 0)
    return " (this looks like a PyTorch checkpoint, e.g. pytorch_model.bin: convert its directory "
           "with mobilellm-convert)";
  if (n >= 2 && p[0] == 0x80 && p[1] <= 5)
    return " (this looks like a legacy PyTorch pickle: convert it with mobilellm-convert)";
  if (n >= 10 && p[8] == '{' && p[9] == '"')
    return " (this looks like a safetensors file: convert its directory with mobilellm-convert)";
  return "";
}

}  // namespace

Result<std::unique_ptr<ModelFile>> ModelFile::Open(const std::string& path, Options options) {
  auto fail = [&](const std::string& what) { return Status::Error(path + ": " + what); };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    return fail("file is empty: expected a .mlm model file");
  }
  void* map = MapFileHugeAligned(fd, size);  // 2 MiB pages where the page cache has them
  ::close(fd);
  if (map == MAP_FAILED) return fail(std::string("mmap failed: ") + std::strerror(errno));
  // Preload: mlock faults every page in and keeps it; where RLIMIT_MEMLOCK refuses, touch them.
  // (Not MAP_POPULATE: it would fault the pages in before the huge-page advice was given.)
  if (options.preload && ::mlock(map, size) != 0) {
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < size; i += 4096) sink = sink + static_cast<const uint8_t*>(map)[i];
  }

  std::unique_ptr<ModelFile> file(new ModelFile());
  file->path_ = path;
  file->base_ = static_cast<const uint8_t*>(map);
  file->size_ = size;
  const uint8_t* p = file->base_;

  if (size < 4 || std::memcmp(p, format::kMagic, 4) != 0)
    return fail(
        "bad magic: expected 'MLM1', found '" +
        Printable(std::string_view(reinterpret_cast<const char*>(p), std::min<uint64_t>(size, 4))) +
        "'" + Identify(p, size));
  if (size < format::kHeaderSize)
    return fail("truncated: file is " + std::to_string(size) + " bytes, shorter than the " +
                std::to_string(format::kHeaderSize) + "-byte header");
  const FileHeader& h = *reinterpret_cast<const FileHeader*>(p);
  file->header_ = &h;
  if (h.version == 0 || h.version > format::kVersion)
    return fail("format version " + std::to_string(h.version) +
                (h.version ? " was made by a newer mobilellm" : " is invalid") +
                ": this build reads version " + std::to_string(format::kVersion));
  if (h.header_size != format::kHeaderSize)
    return fail("header_size: expected " + std::to_string(format::kHeaderSize) + ", found " +
                std::to_string(h.header_size));
  if (h.entry_size != format::kEntrySize)
    return fail("entry_size: expected " + std::to_string(format::kEntrySize) + ", found " +
                std::to_string(h.entry_size));
  if (h.alignment < format::kMinAlignment || (h.alignment & (h.alignment - 1)) != 0)
    return fail("alignment: expected a power of two >= 64, found " + std::to_string(h.alignment));
  if (size < h.file_size)
    return fail("truncated: header says " + std::to_string(h.file_size) + " bytes, file has " +
                std::to_string(size));
  if (size > h.file_size)
    return fail("file has " + std::to_string(size) + " bytes, header says " +
                std::to_string(h.file_size) + " (trailing data: not a file this tool wrote?)");

  file->config_ = ModelConfig::FromRecord(h.config, h.version);
  ModelConfig& c = file->config_;
  MOBILELLM_RETURN_IF_ERROR(c.Validate(path));
  const uint32_t known_flags =
      format::kQkNorm | format::kAttnTemperatureTuning | format::kLayerKinds;
  if (h.version >= 2 && (h.config.flags & ~known_flags) != 0)
    return fail("config flags " + std::to_string(h.config.flags) +
                " has bits this build does not know (made by a newer mobilellm?)");
  const bool has_layer_kinds = h.version >= 2 && (h.config.flags & format::kLayerKinds) != 0;

  // The table, then each entry field before anything uses it (messages included): rank before
  // shape, shape before size, size before range.
  uint64_t table_end = 0;
  // Entries are read in place, so the table must sit at a multiple of their alignment.
  if (h.table_offset % alignof(TensorEntry) != 0)
    return fail("tensor table at offset " + std::to_string(h.table_offset) +
                ": expected a multiple of " + std::to_string(alignof(TensorEntry)));
  if (h.table_offset < format::kHeaderSize || h.tensor_count > format::kMaxTensors ||
      !RangeWithin(h.table_offset, h.tensor_count, format::kEntrySize, size, &table_end))
    return fail("tensor table at offset " + std::to_string(h.table_offset) + " with " +
                std::to_string(h.tensor_count) + " entries of " +
                std::to_string(format::kEntrySize) + " bytes lies outside the file (" +
                std::to_string(size) + " bytes, at most " + std::to_string(format::kMaxTensors) +
                " entries)");

  std::vector<const TensorEntry*>& entries = file->entries_;
  entries.reserve(h.tensor_count);
  file->by_name_.reserve(h.tensor_count);
  for (uint32_t i = 0; i < h.tensor_count; ++i) {
    const TensorEntry& e = *reinterpret_cast<const TensorEntry*>(p + h.table_offset +
                                                                 uint64_t(i) * format::kEntrySize);
    const std::string idx = "tensor #" + std::to_string(i);
    if (std::memchr(e.name, 0, sizeof(e.name)) == nullptr || e.name[0] == '\0')
      return fail(idx + ": name is empty or not NUL-terminated");
    const std::string name = idx + " '" + Printable(e.name) + "'";
    const bool known = format::DTypeSize(e.dtype) != 0 || format::IsQuantized(e.dtype);
    if (!known)
      return fail(name + ": unknown dtype " + std::to_string(e.dtype) +
                  " (expected f32, f16, bf16, q8_0, q4_0 or u8)");
    if (e.layout != uint32_t(format::Layout::kRows) &&
        e.layout != uint32_t(format::Layout::kPanels))
      return fail(name + ": unknown layout " + std::to_string(e.layout) +
                  " (expected 0 = rows or 1 = panels)");
    if (e.rank < 1 || e.rank > format::kMaxRank)
      return fail(name + ": rank " + std::to_string(e.rank) + " not in 1..4");
    // From here on the rank is valid, so ShapeString(e.shape, e.rank) stays inside the entry.
    uint64_t numel = 1;
    for (uint32_t d = 0; d < format::kMaxRank; ++d) {
      if (d >= e.rank) {
        if (e.shape[d] != 0) return fail(name + ": shape has non-zero dims beyond its rank");
        continue;
      }
      if (e.shape[d] == 0) return fail(name + ": bad shape " + ShapeString(e.shape, e.rank));
      if (!CheckedMul(numel, e.shape[d], &numel) || numel > size)
        return fail(name + ": shape " + ShapeString(e.shape, e.rank) + " is larger than the file");
    }
    if (e.layout == uint32_t(format::Layout::kPanels) &&
        (!format::IsQuantized(e.dtype) || e.rank != 2 || e.shape[0] % format::kPanelRows != 0))
      return fail(name +
                  ": panel layout needs a q8_0 or q4_0 matrix with rows a multiple of 16, found " +
                  format::DTypeName(e.dtype) + " " + ShapeString(e.shape, e.rank));
    const uint64_t n = format::TensorBytes(e.dtype, e.rank, e.shape);
    if (n == 0)
      return fail(name + ": " + format::DTypeName(e.dtype) +
                  " needs a matrix whose rows are a multiple of 32, found " +
                  ShapeString(e.shape, e.rank));
    if (e.nbytes != n)
      return fail(name + ": nbytes " + std::to_string(e.nbytes) + " does not match shape " +
                  ShapeString(e.shape, e.rank) + " of " + format::DTypeName(e.dtype) + " (" +
                  std::to_string(n) + ")");
    if (e.offset % h.alignment != 0)
      return fail(name + ": offset " + std::to_string(e.offset) +
                  " is not a multiple of the alignment " + std::to_string(h.alignment));
    if (e.offset < table_end || !InRange(e.offset, e.nbytes, size))
      return fail(name + ": data of " + std::to_string(e.nbytes) + " bytes at offset " +
                  std::to_string(e.offset) + " lies outside the data region [" +
                  std::to_string(table_end) + ", " + std::to_string(size) + ")");
    if (!file->by_name_.emplace(std::string_view(e.name), &e).second)
      return fail("duplicate tensor '" + Printable(e.name) + "'");
    entries.push_back(&e);
  }
  // Ranges are inside the file (checked above), so offset + nbytes cannot wrap here.
  std::vector<const TensorEntry*> by_offset = entries;
  std::sort(by_offset.begin(), by_offset.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset)
      return fail("tensors '" + Printable(by_offset[i - 1]->name) + "' and '" +
                  Printable(by_offset[i]->name) + "' overlap");

  // The per-layer kinds complete the config: read and checked before anything uses it.
  if (has_layer_kinds) {
    const TensorEntry* e = file->Find(format::kLayerKindsTensor);
    if (e == nullptr) return fail("missing tensor 'layer_kinds' (config flags say it exists)");
    if (e->dtype != uint32_t(DType::kU8) || e->rank != 1 || e->shape[0] != uint64_t(c.n_layers()))
      return fail("tensor 'layer_kinds': expected u8 [" + std::to_string(c.n_layers()) +
                  "], found " + format::DTypeName(e->dtype) + " " + ShapeString(e->shape, e->rank));
    const uint8_t* kinds = p + e->offset;
    c.layer_kinds.assign(kinds, kinds + c.n_layers());
    MOBILELLM_RETURN_IF_ERROR(c.Validate(path));
  }

  // Every tensor the config implies, with its exact shape, and nothing else.
  std::vector<TensorSpec> expected = ExpectedTensors(c);
  expected.push_back({format::kTokenizerTensor, {0}, false});
  if (has_layer_kinds) expected.push_back({format::kLayerKindsTensor, {0}, false});
  for (const TensorSpec& spec : expected) {
    const TensorEntry* e = file->Find(spec.name);
    if (e == nullptr) return fail("missing tensor '" + spec.name + "'");
    if (spec.name == format::kLayerKindsTensor) continue;  // checked above
    if (spec.name == format::kTokenizerTensor) {
      if (e->dtype != uint32_t(DType::kU8) || e->rank != 1)
        return fail("tensor 'tokenizer': expected u8 bytes of rank 1");
      continue;
    }
    std::vector<uint64_t> shape(spec.shape.begin(), spec.shape.end());
    if (e->rank != shape.size() || !std::equal(shape.begin(), shape.end(), e->shape))
      return fail("tensor '" + spec.name + "': shape " + ShapeString(e->shape, e->rank) +
                  " does not match the config, expected " +
                  ShapeString(shape.data(), int(shape.size())));
    const bool weight_type = e->dtype == uint32_t(DType::kF32) ||
                             e->dtype == uint32_t(DType::kF16) ||
                             e->dtype == uint32_t(DType::kBF16) || format::IsQuantized(e->dtype);
    if (spec.is_norm ? e->dtype != uint32_t(DType::kF32) : !weight_type)
      return fail("tensor '" + spec.name + "': dtype " + format::DTypeName(e->dtype) +
                  " not allowed (expected " +
                  (spec.is_norm ? "f32" : "f32, f16, bf16, q8_0 or q4_0") + ")");
  }
  for (const char* name : format::kOptionalByteTensors) {
    const TensorEntry* e = file->Find(name);
    if (e == nullptr) continue;
    if (e->dtype != uint32_t(DType::kU8) || e->rank != 1)
      return fail("tensor '" + std::string(name) + "': expected u8 bytes of rank 1");
    expected.push_back({name, {0}, false});
  }
  if (entries.size() != expected.size()) {
    std::unordered_set<std::string_view> names;
    for (const TensorSpec& spec : expected) names.insert(spec.name);
    for (const TensorEntry* e : entries)
      if (!names.count(e->name))
        return fail("unexpected tensor '" + Printable(e->name) + "' for this config");
  }
  return file;
}

ModelFile::~ModelFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const TensorEntry* ModelFile::Find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Tensor ModelFile::View(const TensorEntry& e) const {
  Tensor t;
  t.data = base_ + e.offset;
  t.dtype = DType(e.dtype);
  t.layout = format::Layout(e.layout);
  t.rank = int(e.rank);
  for (uint32_t i = 0; i < e.rank; ++i) t.shape[i] = int64_t(e.shape[i]);
  return t;
}

std::string_view ModelFile::Bytes(const TensorEntry& e) const {
  return {reinterpret_cast<const char*>(base_ + e.offset), size_t(e.nbytes)};
}

Status ModelFile::Verify() const {
  for (const TensorEntry* e : entries_) {
    const uint32_t crc = Crc32(base_ + e->offset, e->nbytes);
    if (crc != e->crc32) {
      char buf[128];
      std::snprintf(buf, sizeof(buf), "checksum mismatch in tensor '%s': expected %08x, found %08x",
                    e->name, e->crc32, crc);
      return Status::Error(path_ + ": " + buf + " (the file is corrupt)");
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------

ModelWriter::ModelWriter(const ModelConfig& config, std::string producer, uint32_t alignment)
    : config_(config), producer_(std::move(producer)), alignment_(alignment) {}

void ModelWriter::Add(const std::string& name, DType dtype, std::vector<int64_t> shape, Fill fill,
                      format::Layout layout) {
  tensors_.push_back({name, dtype, layout, std::move(shape), std::move(fill)});
}

namespace {

Status WriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& path) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, off_t(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::Error(path + ": write failed: " + std::strerror(errno));
    p += w, n -= size_t(w), offset += uint64_t(w);
  }
  return {};
}

// Writes a file front to back in whole 2 MiB pieces at 2 MiB offsets (the last one shorter), so a
// kernel with large page-cache folios caches the new file in 2 MiB folios, which the loader then
// maps with 2 MiB pages (memory.h). Written tensor by tensor, the same bytes stay cached in small
// folios until evicted, and decode streamed them ~15-20% slower here.
class ChunkedWriter {
 public:
  static constexpr uint64_t kChunk = kHugePage;
  ChunkedWriter(int fd, const std::string& path) : fd_(fd), path_(path), chunk_(kChunk, 0) {}

  // Appends bytes at `offset` (>= everything appended before; the gap is zeros).
  Status Put(uint64_t offset, const uint8_t* p, uint64_t n) {
    while (n > 0) {
      MOBILELLM_RETURN_IF_ERROR(Advance(offset));
      const uint64_t in_chunk = offset - start_, take = std::min(n, kChunk - in_chunk);
      std::memcpy(&chunk_[in_chunk], p, take);
      end_ = in_chunk + take;
      p += take, n -= take, offset += take;
    }
    return {};
  }
  Status Finish() { return Flush(); }

 private:
  // Makes the chunk holding `offset` the current one, writing out the ones before it.
  Status Advance(uint64_t offset) {
    if (offset < start_ + kChunk) return {};
    MOBILELLM_RETURN_IF_ERROR(Flush());
    start_ = offset / kChunk * kChunk;
    return {};
  }
  Status Flush() {
    if (end_ == 0) return {};
    MOBILELLM_RETURN_IF_ERROR(WriteAll(fd_, chunk_.data(), end_, start_, path_));
    std::fill(chunk_.begin(), chunk_.begin() + ptrdiff_t(end_), uint8_t(0));
    end_ = 0;
    return {};
  }
  int fd_;
  const std::string& path_;
  std::vector<uint8_t> chunk_;
  uint64_t start_ = 0, end_ = 0;  // the current chunk's file offset; bytes filled in it
};

// The path of the temporary file being written, for the signal handler (one write at a time).
char g_temp_path[4096];
volatile sig_atomic_t g_temp_live = 0;

void RemoveTempAndReraise(int sig) {
  if (g_temp_live) ::unlink(g_temp_path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// The file a write goes to before it is renamed over the target: a random name in the target's
// directory, created with O_EXCL | O_NOFOLLOW, so a name planted in advance (a symlink to a victim,
// a file) is never opened: the attempt fails and another name is tried. Removed unless Commit
// renamed it into place.
class TempFile {
 public:
  // keep_mode >= 0: give the file that mode (the one of the file it replaces).
  Status Create(const std::string& target, int keep_mode) {
    std::random_device rd;  // getrandom(2) on Linux and Android
    for (int attempt = 0; attempt < 16; ++attempt) {
      char suffix[24];
      std::snprintf(suffix, sizeof(suffix), ".tmp.%08x%08x", unsigned(rd()), unsigned(rd()));
      path_ = target + suffix;
      if (path_.size() >= sizeof(g_temp_path)) return Status::Error(target + ": path too long");
      std::memcpy(g_temp_path, path_.c_str(), path_.size() + 1);
      g_temp_live = 1;
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd_ >= 0) break;
      g_temp_live = 0;
      if (errno != EEXIST) return Status::Error(path_ + ": cannot create: " + std::strerror(errno));
    }
    if (fd_ < 0) return Status::Error(target + ": cannot create a temporary file beside it");
    if (keep_mode >= 0 && ::fchmod(fd_, mode_t(keep_mode)) != 0)
      return Status::Error(path_ + ": cannot set the mode: " + std::strerror(errno));
    return {};
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty() && !committed_) ::unlink(path_.c_str());
    g_temp_live = 0;
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  // fsync, close and rename over `target`.
  Status Commit(const std::string& target) {
    if (::fsync(fd_) != 0) return Status::Error(path_ + ": fsync failed: " + std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Status::Error(path_ + ": close failed: " + std::strerror(errno));
    if (::rename(path_.c_str(), target.c_str()) != 0)
      return Status::Error(target +
                           ": cannot rename the finished file into place: " + std::strerror(errno));
    committed_ = true;
    g_temp_live = 0;
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void ModelWriter::RemoveTempFileOnSignals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, RemoveTempAndReraise);
}

Status ModelWriter::Write(const std::string& path, bool overwrite, const Progress& progress) const {
  MOBILELLM_RETURN_IF_ERROR(config_.Validate(path));
  // The per-layer kinds are part of the config: written from it unless a caller copied the tensor.
  std::vector<Pending> tensors = tensors_;
  if (!config_.layer_kinds.empty() &&
      std::none_of(tensors.begin(), tensors.end(),
                   [](const Pending& t) { return t.name == format::kLayerKindsTensor; }))
    tensors.push_back({format::kLayerKindsTensor,
                       DType::kU8,
                       format::Layout::kRows,
                       {int64_t(config_.layer_kinds.size())},
                       [kinds = config_.layer_kinds](uint8_t* dst) {
                         std::memcpy(dst, kinds.data(), kinds.size());
                         return Status();
                       }});
  struct stat st;
  if (!overwrite && ::stat(path.c_str(), &st) == 0)
    return Status::Error(path + ": already exists (use --force to overwrite)");

  // Layout: header, table, then data at aligned offsets in the order tensors were added.
  const auto align = [&](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  std::vector<TensorEntry> table(tensors.size());
  uint64_t offset = align(format::kHeaderSize + uint64_t(tensors.size()) * format::kEntrySize);
  uint64_t total = 0, max_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Pending& t = tensors[i];
    TensorEntry& e = table[i];
    std::memset(&e, 0, sizeof(e));
    if (t.name.size() > format::kMaxNameLength || t.shape.empty() ||
        t.shape.size() > format::kMaxRank)
      return Status::Error(path + ": cannot write tensor '" + t.name +
                           "': name or rank out of range");
    std::memcpy(e.name, t.name.data(), t.name.size());
    e.dtype = uint32_t(t.dtype);
    e.layout = uint32_t(t.layout);
    e.rank = uint32_t(t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) e.shape[d] = uint64_t(t.shape[d]);
    const uint64_t n = format::TensorBytes(e.dtype, e.rank, e.shape);
    if (n == 0)
      return Status::Error(path + ": cannot write tensor '" + t.name +
                           "': invalid shape for its dtype");
    e.nbytes = n;
    e.offset = offset;
    offset = align(offset + n);
    total += n;
    max_bytes = std::max(max_bytes, n);
  }
  const uint64_t file_size = table.empty() ? offset : table.back().offset + table.back().nbytes;

  // A new file gets rw-r--r-- less the umask; overwriting a regular file keeps its mode. On any
  // error below, ~TempFile closes and removes the temporary file.
  const bool keep = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  TempFile temp;
  MOBILELLM_RETURN_IF_ERROR(temp.Create(path, keep ? int(st.st_mode & 07777) : -1));
  const int fd = temp.fd();
  const std::string& tmp = temp.path();
  if (::ftruncate(fd, off_t(file_size)) != 0)
    return Status::Error(tmp + ": cannot size the file: " + std::strerror(errno));

  std::vector<uint8_t> buf(max_bytes);
  ChunkedWriter out(fd, tmp);
  uint64_t done = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    TensorEntry& e = table[i];
    Status s = tensors[i].fill(buf.data());
    if (!s.ok()) return s;
    e.crc32 = Crc32(buf.data(), e.nbytes);
    s = out.Put(e.offset, buf.data(), e.nbytes);
    if (!s.ok()) return s;
    done += e.nbytes;
    if (progress) progress(done, total);
  }
  if (Status s = out.Finish(); !s.ok()) return s;

  FileHeader h;
  std::memset(&h, 0, sizeof(h));
  std::memcpy(h.magic, format::kMagic, 4);
  h.version = config_.FormatVersion();
  h.header_size = format::kHeaderSize;
  h.alignment = alignment_;
  h.file_size = file_size;
  h.table_offset = format::kHeaderSize;
  h.tensor_count = uint32_t(table.size());
  h.entry_size = format::kEntrySize;
  h.config = config_.ToRecord();
  std::snprintf(h.producer, sizeof(h.producer), "%s", producer_.c_str());
  Status s = WriteAll(fd, table.data(), table.size() * sizeof(TensorEntry), h.table_offset, tmp);
  if (s.ok()) s = WriteAll(fd, &h, sizeof(h), 0, tmp);
  if (!s.ok()) return s;
  return temp.Commit(path);
}

Status WriteFileAtomic(const std::string& path,
                       const std::function<Status(const AppendBytes&)>& produce) {
  TempFile temp;
  MOBILELLM_RETURN_IF_ERROR(temp.Create(path, -1));
  uint64_t offset = 0;
  MOBILELLM_RETURN_IF_ERROR(produce([&](const void* data, size_t n) {
    MOBILELLM_RETURN_IF_ERROR(WriteAll(temp.fd(), data, n, offset, temp.path()));
    offset += n;
    return Status();
  }));
  return temp.Commit(path);
}

Status ReadFile(const std::string& path, std::string* out, uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::Error(path + ": not a regular file");
  }
  if (uint64_t(st.st_size) > max_bytes) {
    ::close(fd);
    return Status::Error(path + ": " + std::to_string(st.st_size) + " bytes, more than the " +
                         std::to_string(max_bytes) + " this file may have");
  }
  // Read at most max_bytes + 1, so a file that grows while it is read is caught too.
  out->clear();
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string err = std::strerror(errno);
      ::close(fd);
      return Status::Error(path + ": read failed: " + err);
    }
    if (n == 0) break;
    if (uint64_t(n) > max_bytes - out->size()) {
      ::close(fd);
      return Status::Error(path + ": more than the " + std::to_string(max_bytes) +
                           " bytes this file may have");
    }
    out->append(buf, size_t(n));
  }
  ::close(fd);
  return {};
}

}  // namespace mobilellm
