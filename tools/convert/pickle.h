// A restricted unpickler for the pickles torch.save writes: it builds plain values and tensor
// descriptors, and never executes anything from the file.
//
// Understood: the opcodes of pickle protocols 2-5 that describe data (ints, floats, strings,
// bytes, tuples, lists, dicts, memo, marks), persistent ids naming storages, and exactly these
// globals: collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter and the storage types torch.{Float,Half,BFloat16}Storage. Any
// other global (os.system, builtins.eval, ...) is refused by name, before anything could call it: a
// checkpoint is untrusted.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mobilellm/status.h"

namespace mobilellm::convert {

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

struct PyValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor
  };
  Kind kind = Kind::kNone;
  int64_t i = 0;             // kBool, kInt
  double f = 0;              // kFloat
  std::string s;             // kStr, kBytes; kGlobal: "module.name"; kStorage: key
  std::vector<PyRef> items;  // kTuple, kList; kDict: key0, value0, key1, value1, ...
  std::string storage_type;  // kStorage: "FloatStorage" | "HalfStorage" | "BFloat16Storage"
  int64_t numel = 0;         // kStorage: elements
  PyRef storage;             // kTensor
  int64_t offset = 0;        // kTensor: in elements
  std::vector<int64_t> sizes, strides;  // kTensor
  int depth = 1;                        // nesting depth, bounded to keep destruction shallow
};

// A tensor found in a checkpoint: where its storage lives and how to index it.
struct PickledTensor {
  std::string storage_type;  // as in PyValue
  std::string storage_key;   // the archive member data/<key>
  int64_t storage_numel;
  int64_t offset;
  std::vector<int64_t> sizes, strides;
};

// Runs the restricted unpickler over [data, data + size) and collects every tensor reachable
// from the top-level dict by name. `where` names the file in errors.
Result<std::map<std::string, PickledTensor>> UnpickleStateDict(const uint8_t* data, size_t size,
                                                               const std::string& where);

// The lower level: the unpickled top-level object.
Result<PyRef> Unpickle(const uint8_t* data, size_t size, const std::string& where);

}  // namespace mobilellm::convert
