// ModelFile reads .mlm files (zero-copy, validated); ModelWriter writes them (atomically).
//
// ModelFile::Open maps the file read-only and checks everything format.h documents before any
// tensor is used, so a file that opens can be run without further checks. Tensor views point
// into the mapping: nothing is copied, load time does not grow with model size, and pages
// become resident only when touched (unless Options::preload).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mobilellm/config.h"
#include "mobilellm/format.h"
#include "mobilellm/status.h"
#include "mobilellm/tensor.h"

namespace mobilellm {

// CRC-32 (IEEE 802.3, as zlib computes it). Pass the previous result to continue a stream.
uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);

// The tensors a model of this config has, in file order, with their shapes.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool is_norm;  // 1-D RMSNorm weight: always stored f32
};
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

class ModelFile {
 public:
  struct Options {
    bool preload = false;  // fault every page in now and try to mlock them
  };

  static Result<std::unique_ptr<ModelFile>> Open(const std::string& path, Options options);
  static Result<std::unique_ptr<ModelFile>> Open(const std::string& path) { return Open(path, {}); }
  ~ModelFile();
  ModelFile(const ModelFile&) = delete;
  ModelFile& operator=(const ModelFile&) = delete;

  const std::string& path() const { return path_; }
  const format::FileHeader& header() const { return *header_; }
  const ModelConfig& config() const { return config_; }
  const std::vector<const format::TensorEntry*>& entries() const { return entries_; }
  uint64_t size() const { return size_; }

  // nullptr if absent. O(1): a hash of the names.
  const format::TensorEntry* Find(std::string_view name) const;
  Tensor View(const format::TensorEntry& e) const;
  std::string_view Bytes(const format::TensorEntry& e) const;

  // Recomputes every tensor's CRC-32; the first mismatch is the error.
  Status Verify() const;

 private:
  ModelFile() = default;
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  const format::FileHeader* header_ = nullptr;
  ModelConfig config_;
  std::vector<const format::TensorEntry*> entries_;
  std::unordered_map<std::string_view, const format::TensorEntry*> by_name_;  // into the mapping
};

// Builds a .mlm file tensor by tensor. Tensor bytes are produced at Write time by a callback, so a
// converter holds one tensor in memory at a time. The file is written under a temporary name in
// the target directory and renamed at the end: a failed or interrupted run leaves no output.
class ModelWriter {
 public:
  using Fill = std::function<Status(uint8_t* dst)>;  // writes exactly the tensor's nbytes
  using Progress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

  ModelWriter(const ModelConfig& config, std::string producer,
              uint32_t alignment = format::kDefaultAlignment);
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, Fill fill,
           format::Layout layout = format::Layout::kRows);
  // Writes to a random temporary name beside `path` (created with O_EXCL | O_NOFOLLOW) and
  // renames it over `path`; on any error the temporary file is removed. With `overwrite` an
  // existing file's mode is kept.
  Status Write(const std::string& path, bool overwrite, const Progress& progress = {}) const;

  // For a program's main: SIGINT, SIGTERM and SIGHUP during a Write remove the temporary file, then
  // end the process as the signal would have.
  static void RemoveTempFileOnSignals();

 private:
  struct Pending {
    std::string name;
    DType dtype;
    format::Layout layout;
    std::vector<int64_t> shape;
    Fill fill;
  };
  ModelConfig config_;
  std::string producer_;
  uint32_t alignment_;
  std::vector<Pending> tensors_;
};

// Writes a small file (not a model) atomically, as ModelWriter does: produce(append) calls
// append(data, n) for each run of bytes in order; they go to a random temporary name beside `path`
// (created with O_EXCL | O_NOFOLLOW), which is renamed over `path` at the end and removed on any
// error, so `path` is always either its old content or the whole new one.
using AppendBytes = std::function<Status(const void* data, size_t n)>;
Status WriteFileAtomic(const std::string& path,
                       const std::function<Status(const AppendBytes&)>& produce);

// Files read whole (a prompt, a config.json, a tokenizer.model) may have at most this many bytes.
inline constexpr uint64_t kMaxReadFile = 256ull << 20;

// Reads a whole regular file of at most `max_bytes` into *out. Devices, FIFOs and directories are
// refused (they may never end), and so is a larger file; the error names the path and says why.
// Weights are never read this way: they are memory-mapped.
Status ReadFile(const std::string& path, std::string* out, uint64_t max_bytes = kMaxReadFile);

}  // namespace mobilellm
