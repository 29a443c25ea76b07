#include "pickle.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "mobilellm/untrusted.h"

namespace mobilellm::convert {

namespace {

using Kind = PyValue::Kind;
using PyRef = PyValue*;

constexpr size_t kMaxStack = 1 << 20;  // values on the stack, and marks
constexpr size_t kMaxMemo = 1 << 20;

const std::set<std::string, std::less<>>& AllowedGlobals() {
  static const std::set<std::string, std::less<>> allowed = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch.FloatStorage",
      "torch.HalfStorage",
      "torch.BFloat16Storage",
  };
  return allowed;
}

}  // namespace

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& where)
      : p_(data), end_(data + size), where_(where), out_(new Pickle()) {}

  Result<std::unique_ptr<Pickle>> Run() {
    while (true) {
      if (p_ >= end_) return Fail("ends without a STOP opcode");
      const uint8_t op = *p_++;
      Status s = Step(op);
      if (!s.ok()) return s;
      if (stopped_) {
        if (stack_.size() != 1)
          return Fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        out_->root_ = stack_.back();
        MOBILELLM_RETURN_IF_ERROR(CheckNesting(out_->root_));
        return std::move(out_);
      }
    }
  }

 private:
  // Real nesting depth of everything reachable from `root`, by an iterative depth-first walk:
  // containers may have grown after they were put in others (memo + APPEND / SETITEM), so depth
  // is only known now. A value met again while it is still being walked is a cycle.
  Status CheckNesting(PyRef root) const {
    enum : uint8_t { kUnseen, kOpen, kDone };
    std::vector<std::pair<PyRef, size_t>> path = {{root, 0}};  // value, next item to visit
    root->visit = kOpen;
    while (!path.empty()) {
      auto& [v, next] = path.back();
      if (next < v->items.size()) {
        PyRef child = v->items[next++];
        if (child->visit == kOpen) return Fail("a value contains itself (a cycle)");
        if (child->visit == kUnseen) {
          if (path.size() >= size_t(kMaxPickleDepth))
            return Fail("values nested deeper than " + std::to_string(kMaxPickleDepth));
          child->visit = kOpen;
          path.push_back({child, 0});
        }
        continue;
      }
      v->depth = 1;
      for (PyRef child : v->items) v->depth = std::max(v->depth, child->depth + 1);
      v->visit = kDone;
      path.pop_back();
    }
    return {};
  }

  // Every value and every container slot counts against one budget.
  Status Spend(size_t n) {
    if (n > kMaxPickleValues - spent_)
      return Fail("more than " + std::to_string(kMaxPickleValues) +
                  " values: not a state dict this tool reads");
    spent_ += n;
    return {};
  }
  Result<PyRef> Make(Kind k) {
    MOBILELLM_RETURN_IF_ERROR(Spend(1));
    PyValue& v = out_->values_.emplace_back();
    v.kind = k;
    return &v;
  }
  Status PushNew(Kind k, int64_t i = 0) {
    auto v = Make(k);
    if (!v.ok()) return v.status();
    (*v)->i = i;
    return Push(*v);
  }
  Status Fail(const std::string& what) const {
    return Status::Error(where_ + ": bad pickle: " + what);
  }

  bool Need(uint64_t n) const { return InRange(0, n, uint64_t(end_ - p_)); }
  uint64_t ReadLE(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(p_[i]) << (8 * i);
    p_ += n;
    return v;
  }

  Status Push(PyRef v) {
    if (stack_.size() >= kMaxStack) return Fail("stack too deep");
    stack_.push_back(std::move(v));
    return {};
  }
  Result<PyRef> Pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      return Fail("stack underflow");
    PyRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Result<std::vector<PyRef>> PopMark() {
    if (marks_.empty()) return Fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  Result<PyRef> Top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      return Fail("stack underflow");
    return stack_.back();
  }

  Status Adopt(PyValue& parent, std::vector<PyRef>&& items) {
    MOBILELLM_RETURN_IF_ERROR(Spend(items.size()));
    if (parent.items.empty())
      parent.items = std::move(items);
    else
      parent.items.insert(parent.items.end(), items.begin(), items.end());
    return {};
  }
  Result<PyRef> Container(Kind k, std::vector<PyRef> items) {
    auto v = Make(k);
    if (!v.ok()) return v;
    MOBILELLM_RETURN_IF_ERROR(Adopt(**v, std::move(items)));
    return v;
  }

  Status PushString(Kind k, uint64_t n) {
    if (!Need(n)) return Fail("string runs past the end");
    auto v = Make(k);
    if (!v.ok()) return v.status();
    (*v)->s = std::string_view(reinterpret_cast<const char*>(p_), size_t(n));
    p_ += n;
    return Push(*v);
  }

  Status Memo(uint64_t idx) {
    if (stack_.empty()) return Fail("memoize on an empty stack");
    if (idx >= kMaxMemo) return Fail("memo index too large");
    if (memo_.size() <= idx) memo_.resize(idx + 1);
    memo_[idx] = stack_.back();
    return {};
  }
  Status Get(uint64_t idx) {
    if (idx >= memo_.size() || !memo_[idx])
      return Fail("memo index " + std::to_string(idx) + " was never set");
    return Push(memo_[idx]);
  }

  Status Global(std::string_view module, std::string_view name) {
    const std::string full = std::string(module) + "." + std::string(name);
    const auto it = AllowedGlobals().find(full);
    if (it == AllowedGlobals().end())
      return Status::Error(
          where_ + ": refusing to load global '" + Printable(full) +
          "': a checkpoint may only reference torch tensor-rebuild functions and storage types "
          "(this file may be malicious)");
    auto v = Make(Kind::kGlobal);
    if (!v.ok()) return v.status();
    (*v)->s = *it;  // the allow-list's own string outlives the pickle
    return Push(*v);
  }

  static bool AsInt(const PyRef& v, int64_t* out) {
    if (v->kind != Kind::kInt && v->kind != Kind::kBool) return false;
    *out = v->i;
    return true;
  }
  static bool IsInts(const PyRef& v) {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList) return false;
    int64_t i;
    for (const PyRef& x : v->items)
      if (!AsInt(x, &i)) return false;
    return true;
  }

  // REDUCE / NEWOBJ: "call" one of the allowed globals, which here only builds a descriptor.
  Result<PyRef> Call(const PyRef& fn, const PyRef& args) {
    if (fn->kind != Kind::kGlobal) return Fail("call of a non-global");
    if (args->kind != Kind::kTuple) return Fail("call arguments are not a tuple");
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      if (!a.empty()) return Fail("OrderedDict with arguments");
      return Make(Kind::kDict);
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      if (a.size() < 4 || a[0]->kind != Kind::kStorage)
        return Fail("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
      int64_t offset;
      if (!AsInt(a[1], &offset) || !IsInts(a[2]) || !IsInts(a[3]) ||
          a[2]->items.size() != a[3]->items.size() || a[2]->items.size() > 8)
        return Fail("_rebuild_tensor_v2 with malformed offset, size or stride");
      return Container(Kind::kTensor, {a[0], a[1], a[2], a[3]});
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      if (a.empty() || a[0]->kind != Kind::kTensor)
        return Fail("_rebuild_parameter without a tensor");
      return a[0];
    }
    return Fail("'" + std::string(fn->s) + "' cannot be called");
  }

  Status Step(uint8_t op) {
    switch (op) {
      case 0x80:  // PROTO
        if (!Need(1)) return Fail("truncated PROTO");
        if (*p_ > 5) return Fail("pickle protocol " + std::to_string(*p_) + " is newer than 5");
        ++p_;
        return {};
      case 0x95:  // FRAME: a length hint only
        if (!Need(8)) return Fail("truncated FRAME");
        p_ += 8;
        return {};
      case '.':
        stopped_ = true;
        return {};
      case '(':
        if (marks_.size() >= kMaxStack) return Fail("too many MARKs");
        marks_.push_back(stack_.size());
        return {};
      case '0':
        return Pop().status();
      case '1':
        return PopMark().status();
      case '2': {
        auto t = Top();
        if (!t.ok()) return t.status();
        return Push(*t);
      }
      case 'N':
        return PushNew(Kind::kNone);
      case 0x88:
      case 0x89:
        return PushNew(Kind::kBool, op == 0x88);
      case 'J':
      case 'K':
      case 'M': {
        const int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        if (!Need(n)) return Fail("truncated integer");
        const uint64_t raw = ReadLE(n);
        return PushNew(Kind::kInt, op == 'J' ? int64_t(int32_t(uint32_t(raw))) : int64_t(raw));
      }
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        if (!Need(1)) return Fail("truncated LONG1");
        const int n = *p_++;
        if (n > 8 || !Need(n)) return Fail("LONG1 wider than 64 bits");
        uint64_t raw = n ? ReadLE(n) : 0;
        if (n > 0 && n < 8 && (raw >> (8 * n - 1)) & 1) raw |= ~uint64_t(0) << (8 * n);
        return PushNew(Kind::kInt, int64_t(raw));
      }
      case 'G': {  // BINFLOAT: big-endian double
        if (!Need(8)) return Fail("truncated BINFLOAT");
        uint64_t raw = 0;
        for (int i = 0; i < 8; ++i) raw = raw << 8 | p_[i];
        p_ += 8;
        auto v = Make(Kind::kFloat);
        if (!v.ok()) return v.status();
        std::memcpy(&(*v)->f, &raw, 8);
        return Push(*v);
      }
      case 'X':
      case 'T':
      case 'B': {
        if (!Need(4)) return Fail("truncated string length");
        return PushString(op == 'B' ? Kind::kBytes : Kind::kStr, ReadLE(4));
      }
      case 0x8c:
      case 'U':
      case 'C': {
        if (!Need(1)) return Fail("truncated string length");
        return PushString(op == 'C' ? Kind::kBytes : Kind::kStr, *p_++);
      }
      case 0x8d:
      case 0x8e: {
        if (!Need(8)) return Fail("truncated string length");
        return PushString(op == 0x8e ? Kind::kBytes : Kind::kStr, ReadLE(8));
      }
      case ')':
        return PushNew(Kind::kTuple);
      case ']':
        return PushNew(Kind::kList);
      case '}':
        return PushNew(Kind::kDict);
      case 't':
      case 'l': {
        auto items = PopMark();
        if (!items.ok()) return items.status();
        auto v = Container(op == 't' ? Kind::kTuple : Kind::kList, std::move(*items));
        if (!v.ok()) return v.status();
        return Push(*v);
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        const int n = op - 0x84;
        std::vector<PyRef> items(n);
        for (int i = n - 1; i >= 0; --i) {
          auto v = Pop();
          if (!v.ok()) return v.status();
          items[i] = *v;
        }
        auto v = Container(Kind::kTuple, std::move(items));
        if (!v.ok()) return v.status();
        return Push(*v);
      }
      case 'a':
      case 'e': {
        std::vector<PyRef> items;
        if (op == 'a') {
          auto v = Pop();
          if (!v.ok()) return v.status();
          items.push_back(*v);
        } else {
          auto v = PopMark();
          if (!v.ok()) return v.status();
          items = std::move(*v);
        }
        auto list = Top();
        if (!list.ok()) return list.status();
        if ((*list)->kind != Kind::kList) return Fail("APPEND to a non-list");
        return Adopt(**list, std::move(items));
      }
      case 'd':
      case 's':
      case 'u': {
        std::vector<PyRef> kv;
        if (op == 's') {
          auto v = Pop(), k = Pop();
          if (!v.ok() || !k.ok()) return Fail("stack underflow in SETITEM");
          kv = {*k, *v};
        } else {
          auto items = PopMark();
          if (!items.ok()) return items.status();
          kv = std::move(*items);
        }
        if (kv.size() % 2) return Fail("odd number of dict items");
        PyRef dict;
        if (op == 'd') {
          auto made = Make(Kind::kDict);
          if (!made.ok()) return made.status();
          dict = *made;
          MOBILELLM_RETURN_IF_ERROR(Push(dict));
        } else {
          auto top = Top();
          if (!top.ok()) return top.status();
          dict = *top;
        }
        if (dict->kind != Kind::kDict) return Fail("SETITEM on a non-dict");
        return Adopt(*dict, std::move(kv));
      }
      case 'c': {  // GLOBAL "module\nname\n"
        std::string_view parts[2];
        for (auto& part : parts) {
          const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', size_t(end_ - p_)));
          if (!nl) return Fail("truncated GLOBAL");
          part = std::string_view(reinterpret_cast<const char*>(p_), size_t(nl - p_));
          p_ = nl + 1;
        }
        return Global(parts[0], parts[1]);
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = Pop(), module = Pop();
        if (!name.ok() || !module.ok() || (*name)->kind != Kind::kStr ||
            (*module)->kind != Kind::kStr)
          return Fail("STACK_GLOBAL needs two strings");
        return Global((*module)->s, (*name)->s);
      }
      case 'R':
      case 0x81: {  // REDUCE, NEWOBJ
        auto args = Pop(), fn = Pop();
        if (!args.ok() || !fn.ok()) return Fail("stack underflow in REDUCE");
        auto v = Call(*fn, *args);
        if (!v.ok()) return v.status();
        return Push(*v);
      }
      case 'b': {  // BUILD: state for tensors and OrderedDicts (metadata) carries nothing we need
        auto state = Pop();
        if (!state.ok()) return state.status();
        auto top = Top();
        if (!top.ok()) return top.status();
        if ((*top)->kind != Kind::kDict && (*top)->kind != Kind::kTensor)
          return Fail("BUILD on an unexpected object");
        return {};
      }
      case 'q':
        if (!Need(1)) return Fail("truncated BINPUT");
        return Memo(*p_++);
      case 'r':
        if (!Need(4)) return Fail("truncated LONG_BINPUT");
        return Memo(ReadLE(4));
      case 0x94:
        return Memo(memo_.size());
      case 'h':
        if (!Need(1)) return Fail("truncated BINGET");
        return Get(*p_++);
      case 'j':
        if (!Need(4)) return Fail("truncated LONG_BINGET");
        return Get(ReadLE(4));
      case 'Q': {  // BINPERSID: ('storage', storage_type, key, location, numel)
        auto pid = Pop();
        if (!pid.ok()) return pid.status();
        const auto& a = (*pid)->items;
        if ((*pid)->kind != Kind::kTuple || a.size() != 5 || a[0]->kind != Kind::kStr ||
            a[0]->s != "storage" || a[1]->kind != Kind::kGlobal || a[2]->kind != Kind::kStr ||
            a[4]->kind != Kind::kInt || a[4]->i < 0)
          return Fail("persistent id is not a ('storage', type, key, location, numel) tuple");
        const std::string_view type = a[1]->s;
        if (type.rfind("torch.", 0) != 0 || type.find("Storage") == std::string::npos)
          return Fail("persistent id names '" + Printable(type) + "', not a storage type");
        auto s = Container(Kind::kStorage, {a[1], a[2], a[4]});
        if (!s.ok()) return s.status();
        return Push(*s);
      }
      default: {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "unsupported opcode 0x%02x", op);
        return Fail(buf);
      }
    }
  }

  const uint8_t* p_;
  const uint8_t* end_;
  std::string where_;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::vector<PyRef> memo_;
  bool stopped_ = false;
  size_t spent_ = 0;  // against kMaxPickleValues
  std::unique_ptr<Pickle> out_;
};

Result<std::unique_ptr<Pickle>> Unpickle(const uint8_t* data, size_t size,
                                         const std::string& where) {
  return Unpickler(data, size, where).Run();
}

Result<std::map<std::string, PickledTensor>> UnpickleStateDict(const uint8_t* data, size_t size,
                                                               const std::string& where) {
  auto pickle = Unpickle(data, size, where);
  if (!pickle.ok()) return pickle.status();
  const PyValue* dict = (*pickle)->root();
  // Some trainers save {"state_dict": {...}} or {"model": {...}}; accept one level of wrapping.
  if (dict->kind == Kind::kDict) {
    for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
      const PyValue* k = dict->items[i];
      if (k->kind == Kind::kStr && (k->s == "state_dict" || k->s == "model") &&
          dict->items[i + 1]->kind == Kind::kDict) {
        dict = dict->items[i + 1];
        break;
      }
    }
  }
  if (dict->kind != Kind::kDict)
    return Status::Error(where + ": the pickle's top level is not a dict of tensors");
  const auto ints = [](const PyValue* tuple) {
    std::vector<int64_t> out;
    for (const PyValue* x : tuple->items) out.push_back(x->i);
    return out;
  };
  std::map<std::string, PickledTensor> out;
  for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
    const PyValue* k = dict->items[i];
    const PyValue* v = dict->items[i + 1];
    if (k->kind != Kind::kStr || v->kind != Kind::kTensor)
      continue;  // e.g. "_metadata", step counters
    // Checked when they were built: a tensor is (storage, offset, sizes, strides) and a storage
    // is (type global "torch.XStorage", key, numel).
    const PyValue* storage = v->items[0];
    out[std::string(k->s)] = {std::string(storage->items[0]->s.substr(6)),
                              std::string(storage->items[1]->s),
                              storage->items[2]->i,
                              v->items[1]->i,
                              ints(v->items[2]),
                              ints(v->items[3])};
  }
  return out;
}

}  // namespace mobilellm::convert
