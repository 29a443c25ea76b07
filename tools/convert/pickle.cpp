#include "pickle.h"

#include <cstring>
#include <set>

namespace mobilellm::convert {

namespace {

using Kind = PyValue::Kind;

constexpr int kMaxDepth = 64;
constexpr size_t kMaxStack = 1 << 20;
constexpr size_t kMaxMemo = 1 << 22;

const std::set<std::string>& AllowedGlobals() {
  static const std::set<std::string> allowed = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch.FloatStorage",
      "torch.HalfStorage",
      "torch.BFloat16Storage",
  };
  return allowed;
}

PyRef Make(Kind k) {
  auto v = std::make_shared<PyValue>();
  v->kind = k;
  return v;
}

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const std::string& where)
      : p_(data), end_(data + size), where_(where) {}

  Result<PyRef> Run() {
    while (true) {
      if (p_ >= end_) return Fail("ends without a STOP opcode");
      const uint8_t op = *p_++;
      Status s = Step(op);
      if (!s.ok()) return s;
      if (stopped_) {
        if (stack_.size() != 1)
          return Fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        return stack_.back();
      }
    }
  }

 private:
  Status Fail(const std::string& what) const {
    return Status::Error(where_ + ": bad pickle: " + what);
  }

  bool Need(size_t n) const { return size_t(end_ - p_) >= n; }
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

  Status Adopt(PyValue& parent, const PyRef& child) {
    if (child->depth + 1 > kMaxDepth)
      return Fail("values nested deeper than " + std::to_string(kMaxDepth));
    parent.depth = std::max(parent.depth, child->depth + 1);
    parent.items.push_back(child);
    return {};
  }
  Result<PyRef> Container(Kind k, std::vector<PyRef> items) {
    PyRef v = Make(k);
    for (auto& item : items) MOBILELLM_RETURN_IF_ERROR(Adopt(*v, item));
    return v;
  }

  Status PushString(Kind k, size_t n) {
    if (!Need(n)) return Fail("string runs past the end");
    PyRef v = Make(k);
    v->s.assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return Push(v);
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

  Status Global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (!AllowedGlobals().count(full))
      return Status::Error(
          where_ + ": refusing to load global '" + full +
          "': a checkpoint may only reference torch tensor-rebuild functions and storage types "
          "(this file may be malicious)");
    PyRef v = Make(Kind::kGlobal);
    v->s = full;
    return Push(v);
  }

  static bool AsInt(const PyRef& v, int64_t* out) {
    if (v->kind != Kind::kInt && v->kind != Kind::kBool) return false;
    *out = v->i;
    return true;
  }
  static bool AsInts(const PyRef& v, std::vector<int64_t>* out) {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList) return false;
    out->clear();
    for (const PyRef& x : v->items) {
      int64_t i;
      if (!AsInt(x, &i)) return false;
      out->push_back(i);
    }
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
      PyRef t = Make(Kind::kTensor);
      t->storage = a[0];
      if (!AsInt(a[1], &t->offset) || !AsInts(a[2], &t->sizes) || !AsInts(a[3], &t->strides) ||
          t->sizes.size() != t->strides.size() || t->sizes.size() > 8)
        return Fail("_rebuild_tensor_v2 with malformed offset, size or stride");
      return t;
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      if (a.empty() || a[0]->kind != Kind::kTensor)
        return Fail("_rebuild_parameter without a tensor");
      return a[0];
    }
    return Fail("'" + fn->s + "' cannot be called");
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
        return Push(Make(Kind::kNone));
      case 0x88:
      case 0x89: {
        PyRef v = Make(Kind::kBool);
        v->i = op == 0x88;
        return Push(v);
      }
      case 'J':
      case 'K':
      case 'M': {
        const int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        if (!Need(n)) return Fail("truncated integer");
        PyRef v = Make(Kind::kInt);
        const uint64_t raw = ReadLE(n);
        v->i = op == 'J' ? int64_t(int32_t(uint32_t(raw))) : int64_t(raw);
        return Push(v);
      }
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        if (!Need(1)) return Fail("truncated LONG1");
        const int n = *p_++;
        if (n > 8 || !Need(n)) return Fail("LONG1 wider than 64 bits");
        uint64_t raw = n ? ReadLE(n) : 0;
        if (n > 0 && n < 8 && (raw >> (8 * n - 1)) & 1) raw |= ~uint64_t(0) << (8 * n);
        PyRef v = Make(Kind::kInt);
        v->i = int64_t(raw);
        return Push(v);
      }
      case 'G': {  // BINFLOAT: big-endian double
        if (!Need(8)) return Fail("truncated BINFLOAT");
        uint64_t raw = 0;
        for (int i = 0; i < 8; ++i) raw = raw << 8 | p_[i];
        p_ += 8;
        PyRef v = Make(Kind::kFloat);
        std::memcpy(&v->f, &raw, 8);
        return Push(v);
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
        return Push(Make(Kind::kTuple));
      case ']':
        return Push(Make(Kind::kList));
      case '}':
        return Push(Make(Kind::kDict));
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
        for (auto& item : items) MOBILELLM_RETURN_IF_ERROR(Adopt(**list, item));
        return {};
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
          dict = Make(Kind::kDict);
          MOBILELLM_RETURN_IF_ERROR(Push(dict));
        } else {
          auto top = Top();
          if (!top.ok()) return top.status();
          dict = *top;
        }
        if (dict->kind != Kind::kDict) return Fail("SETITEM on a non-dict");
        for (auto& item : kv) MOBILELLM_RETURN_IF_ERROR(Adopt(*dict, item));
        return {};
      }
      case 'c': {  // GLOBAL "module\nname\n"
        std::string parts[2];
        for (auto& part : parts) {
          const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', size_t(end_ - p_)));
          if (!nl) return Fail("truncated GLOBAL");
          part.assign(reinterpret_cast<const char*>(p_), size_t(nl - p_));
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
        const std::string& type = a[1]->s;
        if (type.rfind("torch.", 0) != 0 || type.find("Storage") == std::string::npos)
          return Fail("persistent id names '" + type + "', not a storage type");
        PyRef s = Make(Kind::kStorage);
        s->storage_type = type.substr(6);
        s->s = a[2]->s;
        s->numel = a[4]->i;
        return Push(s);
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
};

}  // namespace

Result<PyRef> Unpickle(const uint8_t* data, size_t size, const std::string& where) {
  return Machine(data, size, where).Run();
}

Result<std::map<std::string, PickledTensor>> UnpickleStateDict(const uint8_t* data, size_t size,
                                                               const std::string& where) {
  auto root = Unpickle(data, size, where);
  if (!root.ok()) return root.status();
  PyRef dict = *root;
  // Some trainers save {"state_dict": {...}} or {"model": {...}}; accept one level of wrapping.
  if (dict->kind == Kind::kDict) {
    for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
      const PyRef& k = dict->items[i];
      if (k->kind == Kind::kStr && (k->s == "state_dict" || k->s == "model") &&
          dict->items[i + 1]->kind == Kind::kDict) {
        dict = dict->items[i + 1];
        break;
      }
    }
  }
  if (dict->kind != Kind::kDict)
    return Status::Error(where + ": the pickle's top level is not a dict of tensors");
  std::map<std::string, PickledTensor> out;
  for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
    const PyRef& k = dict->items[i];
    const PyRef& v = dict->items[i + 1];
    if (k->kind != Kind::kStr || v->kind != Kind::kTensor)
      continue;  // e.g. "_metadata", step counters
    out[k->s] = {v->storage->storage_type,
                 v->storage->s,
                 v->storage->numel,
                 v->offset,
                 v->sizes,
                 v->strides};
  }
  return out;
}

}  // namespace mobilellm::convert
