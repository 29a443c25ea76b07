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
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mobilellm/status.h"

namespace mobilellm::convert {

// One unpickled value. Values live in their Pickle's arena and point at each other with plain
// pointers: destroying a Pickle frees them one by one, never recursively, so no shape of input
// (a million nested lists, a list that contains itself) can overflow the stack or leak.
struct PyValue {
  enum class Kind : uint8_t {
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
  uint8_t visit = 0;   // the nesting check's DFS state
  int depth = 0;       // nesting depth, known after the check: 1 for a leaf
  int64_t i = 0;       // kBool, kInt
  double f = 0;        // kFloat
  std::string_view s;  // kStr, kBytes: a view into the pickle bytes; kGlobal: "module.name"
  // kTuple, kList; kDict: key0, value0, key1, value1, ...; kStorage: (type global, key str,
  // numel int); kTensor: (storage, offset int, sizes tuple, strides tuple), all checked.
  std::vector<PyValue*> items;
};

// The values of one pickle. Strings are views into the unpickled bytes, which must outlive it.
class Pickle {
 public:
  const PyValue* root() const { return root_; }

 private:
  friend class Unpickler;
  std::deque<PyValue> values_;  // stable addresses
  PyValue* root_ = nullptr;
};

// A tensor found in a checkpoint: where its storage lives and how to index it.
struct PickledTensor {
  std::string storage_type;  // "FloatStorage" | "HalfStorage" | "BFloat16Storage" | ...
  std::string storage_key;   // the archive member data/<key>
  int64_t storage_numel;
  int64_t offset;
  std::vector<int64_t> sizes, strides;
};

// Limits on what one pickle may build, far above any torch.save state dict (a 10k-tensor one
// makes ~400k values and item slots): a few bytes of opcodes cannot cost gigabytes.
inline constexpr int kMaxPickleDepth = 64;           // real nesting, after every APPEND / SETITEM
inline constexpr size_t kMaxPickleValues = 1 << 21;  // values made + items added to containers

// Runs the restricted unpickler over [data, data + size) and collects every tensor reachable
// from the top-level dict by name. `where` names the file in errors.
Result<std::map<std::string, PickledTensor>> UnpickleStateDict(const uint8_t* data, size_t size,
                                                               const std::string& where);

// The lower level: every value of the pickle, its root the unpickled top-level object. Fails on
// values nested deeper than kMaxPickleDepth (a cycle is infinitely deep) and past the budget.
Result<std::unique_ptr<Pickle>> Unpickle(const uint8_t* data, size_t size,
                                         const std::string& where);

}  // namespace mobilellm::convert
