// Chat-template evaluator: walks the tree jinja_parse.cpp built, with Jinja2's runtime semantics
// (undefined values, loop scopes, Python operators, filters, tests and str methods), and the
// ChatTemplate API on top. Every step, loop iteration and created string is counted against
// RenderLimits, so a hostile template ends with an error instead of hanging or exhausting memory.
#include <algorithm>
#include <climits>
#include <new>

#include "jinja.h"
#include "mobilellm/chat_template.h"

namespace mobilellm {
namespace jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(const RenderLimits& limits) : limits_(limits) {}

  std::string Run(const Program& program, Dict globals) {
    scopes_.push_back(std::move(globals));
    scopes_.emplace_back();
    Exec(program.nodes);
    return std::move(out_);
  }

  int line() const { return line_; }

 private:
  // ---- accounting ---------------------------------------------------------------------------
  void Step() {
    if (++steps_ > limits_.max_steps) {
      Fail(line_, "more than " + std::to_string(limits_.max_steps) +
                      " steps (RenderLimits::max_steps): does a loop never end?");
    }
  }
  // Charges `bytes` about to be created (a string of that size, unless !string); Fail()s past
  // the limits.
  void Produce(uint64_t bytes, bool string = true) {
    if (string && bytes > limits_.max_output_bytes) {
      Fail(line_, "a value of " + std::to_string(bytes) + " bytes, more than " +
                      std::to_string(limits_.max_output_bytes) +
                      " (RenderLimits::max_output_bytes)");
    }
    work_ += bytes;
    if (work_ > limits_.max_work_bytes) {
      Fail(line_, "more than " + std::to_string(limits_.max_work_bytes) +
                      " bytes of values created (RenderLimits::max_work_bytes)");
    }
  }
  Value MakeStr(std::string s) {
    Produce(s.size());
    return Value::Str(std::move(s));
  }
  Value MakeList(List items) {
    Produce(items.size() * sizeof(Value), false);
    return Value::MakeList(std::move(items));
  }
  void Append(std::string_view s) {
    if (out_.size() + s.size() > limits_.max_output_bytes) {
      Fail(line_, "output longer than " + std::to_string(limits_.max_output_bytes) +
                      " bytes (RenderLimits::max_output_bytes)");
    }
    out_ += s;
  }

  // ---- variables ----------------------------------------------------------------------------
  Value Lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      for (const auto& kv : *s) {
        if (kv.first == name) return kv.second;
      }
    }
    return Value::Undefined("'" + name + "' is undefined");
  }
  void Assign(const std::string& name, Value v) {
    for (auto& kv : scopes_.back()) {
      if (kv.first == name) {
        kv.second = std::move(v);
        return;
      }
    }
    scopes_.back().emplace_back(name, std::move(v));
  }
  void Bind(const std::vector<std::string>& targets, const Value& v, int line) {
    if (targets.size() == 1) {
      Assign(targets[0], v);
      return;
    }
    std::vector<Value> items = Iterate(v, line);
    if (items.size() != targets.size()) {
      Fail(line, (items.size() > targets.size() ? "too many" : "not enough") +
                     std::string(" values to unpack (expected ") + std::to_string(targets.size()) +
                     ", got " + std::to_string(items.size()) + ")");
    }
    for (size_t k = 0; k < targets.size(); ++k) Assign(targets[k], items[k]);
  }

  [[noreturn]] void FailUndefined(const Value& v, int line) {
    Fail(line, v.s.empty() ? "undefined value" : v.s);
  }

  // ---- statements ---------------------------------------------------------------------------
  Flow Exec(const std::vector<Node>& nodes) {
    for (const Node& n : nodes) {
      line_ = n.line;
      Step();
      switch (n.kind) {
        case NodeKind::kText:
          Append(n.text);
          break;
        case NodeKind::kOutput: {
          const Value v = Eval(*n.expr);
          if (v.kind == Value::kString) {
            Append(v.s);
          } else {
            const std::string s = Str(v);
            Produce(s.size());
            Append(s);
          }
          break;
        }
        case NodeKind::kIf:
          for (const auto& [cond, body] : n.branches) {
            if (!cond || Truthy(Eval(*cond))) {
              const Flow f = Exec(body);
              if (f != Flow::kNormal) return f;
              break;
            }
          }
          break;
        case NodeKind::kFor:
          ExecFor(n);
          break;
        case NodeKind::kSet:
          Bind(n.targets, Eval(*n.expr), n.line);
          break;
        case NodeKind::kSetAttr: {
          const Value target = Lookup(n.targets[0]);
          if (target.kind != Value::kNamespace) {
            Fail(n.line, "cannot assign attribute on non-namespace object '" + n.targets[0] + "'");
          }
          Value v = Eval(*n.expr);
          if (ContainsNamespace(v)) {
            Fail(n.line, "unsupported: storing a namespace inside a namespace");
          }
          Dict& d = *target.ns;
          auto it = std::find_if(d.begin(), d.end(),
                                 [&](const auto& kv) { return kv.first == n.targets[1]; });
          if (it != d.end()) {
            it->second = std::move(v);
          } else {
            d.emplace_back(n.targets[1], std::move(v));
          }
          break;
        }
        case NodeKind::kBreak:
          return Flow::kBreak;
        case NodeKind::kContinue:
          return Flow::kContinue;
      }
    }
    return Flow::kNormal;
  }

  static bool ContainsNamespace(const Value& v) {
    if (v.kind == Value::kNamespace) return true;
    if (v.kind == Value::kList) {
      for (const Value& x : *v.list) {
        if (ContainsNamespace(x)) return true;
      }
    }
    if (v.kind == Value::kDict) {
      for (const auto& kv : *v.dict) {
        if (ContainsNamespace(kv.second)) return true;
      }
    }
    return false;
  }

  void ExecFor(const Node& n) {
    std::vector<Value> items = Iterate(Eval(*n.expr), n.line);
    if (n.filter) {
      std::vector<Value> kept;
      for (Value& item : items) {
        Step();
        scopes_.emplace_back();
        Bind(n.targets, item, n.line);
        const bool keep = Truthy(Eval(*n.filter));
        scopes_.pop_back();
        if (keep) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const int64_t len = int64_t(items.size());
    for (int64_t k = 0; k < len; ++k) {
      line_ = n.line;
      Step();
      scopes_.emplace_back();
      Bind(n.targets, items[k], n.line);
      Dict loop = {
          {"index0", Value::Int(k)},
          {"index", Value::Int(k + 1)},
          {"revindex", Value::Int(len - k)},
          {"revindex0", Value::Int(len - k - 1)},
          {"first", Value::Bool(k == 0)},
          {"last", Value::Bool(k == len - 1)},
          {"length", Value::Int(len)},
          {"depth", Value::Int(1)},
          {"depth0", Value::Int(0)},
          {"previtem", k > 0 ? items[k - 1] : Value::Undefined("there is no previous item")},
          {"nextitem", k + 1 < len ? items[k + 1] : Value::Undefined("there is no next item")},
      };
      Value loop_value;  // built directly: its items are already bounded in depth
      loop_value.kind = Value::kDict;
      int depth = items[k].depth;
      if (k > 0) depth = std::max<int>(depth, items[k - 1].depth);
      if (k + 1 < len) depth = std::max<int>(depth, items[k + 1].depth);
      loop_value.depth = uint8_t(depth + 1);
      loop_value.dict = std::make_shared<const Dict>(std::move(loop));
      Assign("loop", std::move(loop_value));
      const Flow f = Exec(n.body);
      scopes_.pop_back();
      if (f == Flow::kBreak) break;
    }
    if (len == 0 && !n.else_body.empty()) {
      scopes_.emplace_back();
      const Flow f = Exec(n.else_body);
      scopes_.pop_back();
      (void)f;  // the parser only allows break/continue inside a loop body
    }
  }

  // Python's iter(v), materialized.
  std::vector<Value> Iterate(const Value& v, int line) {
    switch (v.kind) {
      case Value::kUndefined:
        return {};
      case Value::kList:
        return *v.list;
      case Value::kDict: {
        std::vector<Value> keys;
        for (const auto& kv : *v.dict) keys.push_back(Value::Str(kv.first));
        return keys;
      }
      case Value::kString: {
        std::vector<Value> chars;
        Produce(v.s.size() * sizeof(Value), false);
        for (char32_t c : Decode(v.s)) chars.push_back(Value::Str(Encode({&c, 1})));
        return chars;
      }
      default:
        Fail(line, std::string("'") + TypeName(v) + "' object is not iterable");
    }
  }

  // ---- expressions --------------------------------------------------------------------------
  Value Eval(const Expr& e) {
    Step();
    switch (e.op) {
      case Op::kLiteral:
        return e.literal;
      case Op::kName:
        return Lookup(e.name);
      case Op::kList: {
        List items;
        for (const ExprPtr& a : e.args) items.push_back(Eval(*a));
        return MakeList(std::move(items));
      }
      case Op::kDict: {
        Dict items;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = Eval(*e.args[k]);
          if (key.kind != Value::kString)
            Fail(e.line, "unsupported: a dict key that is not a string");
          Value value = Eval(*e.args[k + 1]);
          auto it = std::find_if(items.begin(), items.end(),
                                 [&](const auto& kv) { return kv.first == key.s; });
          if (it != items.end()) {
            it->second = std::move(value);
          } else {
            items.emplace_back(key.s, std::move(value));
          }
        }
        Produce(items.size() * sizeof(Value), false);
        return Value::MakeDict(std::move(items));
      }
      case Op::kAttr:
        return GetAttr(Eval(*e.args[0]), e.name, e.line);
      case Op::kItem:
        return GetItem(Eval(*e.args[0]), Eval(*e.args[1]), e.line);
      case Op::kSlice:
        return Slice(e);
      case Op::kCall:
        return Call(e);
      case Op::kMethod:
        return Method(e);
      case Op::kFilter:
        return Filter(e);
      case Op::kTest:
        return Value::Bool(Test(e) != e.negate);
      case Op::kNot:
        return Value::Bool(!Truthy(Eval(*e.args[0])));
      case Op::kNeg:
      case Op::kPos: {
        const Value v = Eval(*e.args[0]);
        if (v.kind == Value::kUndefined) FailUndefined(v, e.line);
        if (!v.is_number()) {
          Fail(e.line, std::string("bad operand type for unary ") + (e.op == Op::kNeg ? "-" : "+") +
                           ": '" + TypeName(v) + "'");
        }
        if (e.op == Op::kPos) return Value::Int(v.i);
        if (v.i == INT64_MIN) Fail(e.line, "integer overflow");
        return Value::Int(-v.i);
      }
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kFloorDiv:
      case Op::kMod:
      case Op::kPow:
        return Arithmetic(e.op, Eval(*e.args[0]), Eval(*e.args[1]), e.line);
      case Op::kConcat: {
        const Value a = Eval(*e.args[0]);
        const Value b = Eval(*e.args[1]);
        const std::string sa = Str(a), sb = Str(b);
        Produce(sa.size() + sb.size());
        return Value::Str(sa + sb);
      }
      case Op::kAnd: {
        Value a = Eval(*e.args[0]);
        return Truthy(a) ? Eval(*e.args[1]) : a;
      }
      case Op::kOr: {
        Value a = Eval(*e.args[0]);
        return Truthy(a) ? a : Eval(*e.args[1]);
      }
      case Op::kCond:
        if (Truthy(Eval(*e.args[1]))) return Eval(*e.args[0]);
        if (e.args[2]) return Eval(*e.args[2]);
        return Value::Undefined("the inline if-expression evaluated to false and has no else");
      case Op::kCompare: {
        Value left = Eval(*e.args[0]);
        for (size_t k = 0; k < e.cmp.size(); ++k) {
          Value right = Eval(*e.args[k + 1]);
          if (!CompareOp(e.cmp[k], left, right, e.line)) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
    }
    Fail(e.line, "unknown expression");
  }

  bool CompareOp(CmpOp op, const Value& a, const Value& b, int line) {
    switch (op) {
      case CmpOp::kEq:
        return Equal(a, b);
      case CmpOp::kNe:
        return !Equal(a, b);
      case CmpOp::kLt:
        return Compare(a, b, line) < 0;
      case CmpOp::kLe:
        return Compare(a, b, line) <= 0;
      case CmpOp::kGt:
        return Compare(a, b, line) > 0;
      case CmpOp::kGe:
        return Compare(a, b, line) >= 0;
      case CmpOp::kIn:
        return Contains(b, a, line);
      case CmpOp::kNotIn:
        return !Contains(b, a, line);
    }
    return false;
  }

  // Python's `needle in haystack`.
  bool Contains(const Value& haystack, const Value& needle, int line) {
    switch (haystack.kind) {
      case Value::kUndefined:
        return false;  // iterates as empty
      case Value::kString:
        if (needle.kind != Value::kString) {
          if (needle.kind == Value::kUndefined) FailUndefined(needle, line);
          Fail(line, std::string("'in <string>' requires string as left operand, not ") +
                         TypeName(needle));
        }
        return haystack.s.find(needle.s) != std::string::npos;
      case Value::kList:
        for (const Value& x : *haystack.list) {
          Step();
          if (Equal(x, needle)) return true;
        }
        return false;
      case Value::kDict:
        return needle.kind == Value::kString && haystack.Find(needle.s);
      default:
        Fail(line, std::string("argument of type '") + TypeName(haystack) + "' is not iterable");
    }
  }

  Value Arithmetic(Op op, const Value& a, const Value& b, int line) {
    if (a.kind == Value::kUndefined) FailUndefined(a, line);
    if (b.kind == Value::kUndefined) FailUndefined(b, line);
    if (a.is_number() && b.is_number()) {
      int64_t r = 0;
      bool overflow = false;
      switch (op) {
        case Op::kAdd:
          overflow = __builtin_add_overflow(a.i, b.i, &r);
          break;
        case Op::kSub:
          overflow = __builtin_sub_overflow(a.i, b.i, &r);
          break;
        case Op::kMul:
          overflow = __builtin_mul_overflow(a.i, b.i, &r);
          break;
        case Op::kFloorDiv:
        case Op::kMod: {
          if (b.i == 0) Fail(line, "integer division or modulo by zero");
          if (a.i == INT64_MIN && b.i == -1) Fail(line, "integer overflow");
          int64_t q = a.i / b.i, m = a.i % b.i;
          if (m != 0 && ((m < 0) != (b.i < 0))) --q, m += b.i;  // floor, as Python
          r = op == Op::kFloorDiv ? q : m;
          break;
        }
        case Op::kPow: {
          if (b.i < 0) Fail(line, "unsupported: a negative exponent (gives a float)");
          if (a.i == 0 || a.i == 1) {
            r = b.i == 0 ? 1 : a.i;
          } else if (a.i == -1) {
            r = b.i % 2 ? -1 : 1;
          } else {  // |a| >= 2 overflows within 63 multiplications
            r = 1;
            for (int64_t k = 0; k < b.i && !overflow; ++k) {
              overflow = __builtin_mul_overflow(r, a.i, &r);
            }
          }
          break;
        }
        default:
          break;
      }
      if (overflow) Fail(line, "integer overflow (integers are 64-bit here)");
      return Value::Int(r);
    }
    if (op == Op::kAdd && a.kind == Value::kString && b.kind == Value::kString) {
      Produce(a.s.size() + b.s.size());
      return Value::Str(a.s + b.s);
    }
    if (op == Op::kAdd && a.kind == Value::kList && b.kind == Value::kList) {
      List items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return MakeList(std::move(items));
    }
    if (op == Op::kMul && (a.kind == Value::kString || a.kind == Value::kList) && b.is_number()) {
      return Repeat(a, b.i, line);
    }
    if (op == Op::kMul && (b.kind == Value::kString || b.kind == Value::kList) && a.is_number()) {
      return Repeat(b, a.i, line);
    }
    if (op == Op::kMod && a.kind == Value::kString) {
      Fail(line, "unsupported: printf-style string formatting with '%'");
    }
    static const char* const kNames[] = {"+", "-", "*", "//", "%", "**"};
    const char* name = kNames[int(op) - int(Op::kAdd)];
    Fail(line, std::string("unsupported operand types for ") + name + ": '" + TypeName(a) +
                   "' and '" + TypeName(b) + "'");
  }

  Value Repeat(const Value& v, int64_t n, int line) {
    if (n <= 0) return v.kind == Value::kString ? Value::Str("") : MakeList({});
    const uint64_t unit = v.kind == Value::kString ? v.s.size() : v.list->size() * sizeof(Value);
    if (unit != 0 && uint64_t(n) > limits_.max_output_bytes / unit + 1) {
      Fail(line, "a repeated value larger than RenderLimits::max_output_bytes");
    }
    Produce(unit * uint64_t(n), v.kind == Value::kString);
    if (v.kind == Value::kString) {
      std::string s;
      for (int64_t k = 0; k < n; ++k) s += v.s;
      return Value::Str(std::move(s));
    }
    List items;
    for (int64_t k = 0; k < n; ++k) items.insert(items.end(), v.list->begin(), v.list->end());
    return Value::MakeList(std::move(items));
  }

  // Jinja2's getattr(obj, name): a dict's key, a namespace's attribute, else undefined.
  Value GetAttr(const Value& obj, const std::string& name, int line) {
    if (obj.kind == Value::kUndefined) FailUndefined(obj, line);
    if (const Value* v = obj.Find(name)) return *v;
    return Value::Undefined("'" + std::string(TypeName(obj)) + " object' has no attribute '" +
                            name + "'");
  }

  // Jinja2's getitem(obj, key): lists and strings by (negative) index, dicts by key.
  Value GetItem(const Value& obj, const Value& key, int line) {
    if (obj.kind == Value::kUndefined) FailUndefined(obj, line);
    if (key.kind == Value::kUndefined) FailUndefined(key, line);
    if (key.kind == Value::kString) return GetAttr(obj, key.s, line);
    if ((obj.kind == Value::kList || obj.kind == Value::kString) && key.is_number()) {
      if (obj.kind == Value::kList) {
        const int64_t n = int64_t(obj.list->size());
        const int64_t k = key.i < 0 ? key.i + n : key.i;
        if (k >= 0 && k < n) return (*obj.list)[k];
      } else if (IsAscii(obj.s)) {
        const int64_t n = int64_t(obj.s.size());
        const int64_t k = key.i < 0 ? key.i + n : key.i;
        if (k >= 0 && k < n) return Value::Str(obj.s.substr(k, 1));
      } else {
        const std::u32string cp = Decode(obj.s);
        const int64_t n = int64_t(cp.size());
        const int64_t k = key.i < 0 ? key.i + n : key.i;
        if (k >= 0 && k < n) return Value::Str(Encode({&cp[k], 1}));
      }
    }
    return Value::Undefined("'" + std::string(TypeName(obj)) + " object' has no element " +
                            Repr(key));
  }

  Value Slice(const Expr& e) {
    const Value obj = Eval(*e.args[0]);
    if (obj.kind == Value::kUndefined) FailUndefined(obj, e.line);
    int64_t bound[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      const Value v = Eval(*e.args[k + 1]);
      if (v.kind == Value::kNone) continue;
      if (!v.is_number()) Fail(e.line, "slice indices must be integers or None");
      bound[k] = v.i;
      given[k] = true;
    }
    if (obj.kind != Value::kList && obj.kind != Value::kString) {
      Fail(e.line, std::string("'") + TypeName(obj) + "' object is not subscriptable");
    }
    const int64_t step = bound[2];
    if (step == 0) Fail(e.line, "slice step cannot be zero");
    if (step == INT64_MIN) Fail(e.line, "slice step too small");
    const std::u32string cp = obj.kind == Value::kString ? Decode(obj.s) : std::u32string();
    const int64_t n = int64_t(obj.kind == Value::kString ? cp.size() : obj.list->size());
    // PySlice_AdjustIndices.
    auto adjust = [&](int64_t v, bool is_given, int64_t dflt) {
      if (!is_given) return dflt;
      if (v < 0) v = v < -n ? (step < 0 ? -1 : 0) : v + n;
      if (v >= n) v = step < 0 ? n - 1 : n;
      return v;
    };
    const int64_t start = adjust(bound[0], given[0], step < 0 ? n - 1 : 0);
    const int64_t stop = adjust(bound[1], given[1], step < 0 ? -1 : n);
    std::vector<int64_t> picks;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      picks.push_back(k);
      if ((step > 0 && k > INT64_MAX - step) || (step < 0 && k < INT64_MIN - step)) break;
    }
    if (obj.kind == Value::kString) {
      std::u32string out;
      for (int64_t k : picks) out.push_back(cp[k]);
      return MakeStr(Encode(out));
    }
    List items;
    for (int64_t k : picks) items.push_back((*obj.list)[k]);
    return MakeList(std::move(items));
  }

  // Positional and keyword arguments of a call: args[first..] of e, bound to `names` in order.
  // Returns one slot per name; absent ones are nullopt-like (kind kUndefined, s "missing").
  std::vector<Value> Args(const Expr& e, size_t first, const std::vector<const char*>& names) {
    const size_t n_kw = e.kwarg_names.size();
    const size_t n_pos = e.args.size() - first - n_kw;
    if (n_pos > names.size()) {
      Fail(e.line, "'" + e.name + "' takes at most " + std::to_string(names.size()) +
                       " arguments, got " + std::to_string(n_pos));
    }
    std::vector<Value> out(names.size(), Value::Undefined(kMissing));
    for (size_t k = 0; k < n_pos; ++k) out[k] = Eval(*e.args[first + k]);
    for (size_t k = 0; k < n_kw; ++k) {
      const std::string& kw = e.kwarg_names[k];
      size_t slot = names.size();
      for (size_t j = 0; j < names.size(); ++j) {
        if (kw == names[j]) slot = j;
      }
      if (slot == names.size())
        Fail(e.line, "'" + e.name + "' got an unexpected argument '" + kw + "'");
      if (slot < n_pos) Fail(e.line, "'" + e.name + "' got multiple values for '" + kw + "'");
      out[slot] = Eval(*e.args[e.args.size() - n_kw + k]);
    }
    return out;
  }
  static bool Missing(const Value& v) { return v.kind == Value::kUndefined && v.s == kMissing; }
  static constexpr const char* kMissing = "\x01missing argument";

  std::string StrArg(const Value& v, const Expr& e, const char* what) {
    if (v.kind != Value::kString) {
      if (v.kind == Value::kUndefined && !Missing(v)) FailUndefined(v, e.line);
      Fail(e.line, "'" + e.name + "': " + what + " must be a string, not " + TypeName(v));
    }
    return v.s;
  }
  int64_t IntArg(const Value& v, const Expr& e, const char* what) {
    if (!v.is_number()) {
      if (v.kind == Value::kUndefined && !Missing(v)) FailUndefined(v, e.line);
      Fail(e.line, "'" + e.name + "': " + what + " must be an integer, not " + TypeName(v));
    }
    return v.i;
  }

  Value Call(const Expr& e) {
    if (e.name == "raise_exception") {
      const std::vector<Value> a = Args(e, 0, {"message"});
      Fail(e.line, Missing(a[0]) ? "raise_exception()" : Str(a[0]));
    }
    if (e.name == "namespace") {
      auto ns = std::make_shared<Dict>();
      const size_t n_pos = e.args.size() - e.kwarg_names.size();
      if (n_pos > 1) Fail(e.line, "namespace() takes at most one positional argument (a dict)");
      if (n_pos == 1) {
        const Value init = Eval(*e.args[0]);
        if (init.kind != Value::kDict) Fail(e.line, "namespace(): the argument must be a dict");
        *ns = *init.dict;
      }
      for (size_t k = 0; k < e.kwarg_names.size(); ++k) {
        Value v = Eval(*e.args[n_pos + k]);
        if (ContainsNamespace(v)) Fail(e.line, "unsupported: a namespace inside a namespace");
        auto it = std::find_if(ns->begin(), ns->end(),
                               [&](const auto& kv) { return kv.first == e.kwarg_names[k]; });
        if (it != ns->end()) {
          it->second = std::move(v);
        } else {
          ns->emplace_back(e.kwarg_names[k], std::move(v));
        }
      }
      Value v;
      v.kind = Value::kNamespace;
      v.ns = std::move(ns);
      return v;
    }
    // range(stop) / range(start, stop[, step]); the sandbox's limit is 100000 items.
    const std::vector<Value> a = Args(e, 0, {"start", "stop", "step"});
    if (Missing(a[0])) Fail(e.line, "range expected at least 1 argument");
    int64_t start = 0, stop = IntArg(a[0], e, "stop"), step = 1;
    if (!Missing(a[1])) start = stop, stop = IntArg(a[1], e, "stop");
    if (!Missing(a[2])) step = IntArg(a[2], e, "step");
    if (step == 0) Fail(e.line, "range() arg 3 must not be zero");
    List items;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (items.size() >= 100000) Fail(e.line, "range too big, maximum size is 100000");
      items.push_back(Value::Int(k));
      if ((step > 0 && k > INT64_MAX - step) || (step < 0 && k < INT64_MIN - step)) break;
    }
    return MakeList(std::move(items));
  }

  // ---- str and dict methods -----------------------------------------------------------------
  static Value Pair(const std::string& key, const Value& value) {  // the tuple (key, value)
    Value v = Value::MakeList({Value::Str(key), value});
    v.tuple = true;
    return v;
  }

  static std::u32string Strip(std::u32string s, const std::u32string* chars, bool left,
                              bool right) {
    auto drop = [&](char32_t c) {
      return chars ? chars->find(c) != std::u32string::npos : IsSpace(c);
    };
    size_t b = 0, e = s.size();
    if (left)
      while (b < e && drop(s[b])) ++b;
    if (right)
      while (e > b && drop(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  Value StripValue(const std::string& s, const Value& chars, const Expr& e, bool left, bool right) {
    std::u32string set;
    const bool has_chars = !Missing(chars) && chars.kind != Value::kNone;
    if (has_chars) set = Decode(StrArg(chars, e, "chars"));
    return MakeStr(Encode(Strip(Decode(s), has_chars ? &set : nullptr, left, right)));
  }

  std::string CaseMap(const std::string& s, int mode) {  // 0 upper, 1 lower, 2 title, 3 capitalize
    std::u32string out;
    bool prev_cased = false;
    size_t k = 0;
    for (char32_t c : Decode(s)) {
      const bool up = mode == 0 || (mode == 2 && !prev_cased) || (mode == 3 && k == 0);
      if (up && c == 0xDF) {  // ß
        out += mode == 0 ? U"SS" : U"Ss";
      } else {
        out.push_back(up ? Upper(c) : Lower(c));
      }
      prev_cased = IsCased(c);
      ++k;
    }
    return Encode(out);
  }

  Value Split(const std::string& s, const Value& sep_v, const Value& max_v, const Expr& e) {
    int64_t maxsplit = Missing(max_v) ? -1 : IntArg(max_v, e, "maxsplit");
    if (maxsplit < 0) maxsplit = INT64_MAX;
    List parts;
    auto add = [&](std::string part) {
      Step();
      Produce(part.size() + sizeof(Value));
      parts.push_back(Value::Str(std::move(part)));
    };
    if (Missing(sep_v) || sep_v.kind == Value::kNone) {
      const std::u32string cp = Decode(s);
      size_t i = 0;
      const size_t n = cp.size();
      while (maxsplit-- > 0) {
        while (i < n && IsSpace(cp[i])) ++i;
        if (i == n) break;
        const size_t j = i;
        while (i < n && !IsSpace(cp[i])) ++i;
        add(Encode(std::u32string_view(cp).substr(j, i - j)));
      }
      if (i < n) {
        while (i < n && IsSpace(cp[i])) ++i;
        if (i != n) add(Encode(std::u32string_view(cp).substr(i)));
      }
    } else {
      const std::string sep = StrArg(sep_v, e, "sep");
      if (sep.empty()) Fail(e.line, "empty separator");
      size_t i = 0;
      for (size_t j; maxsplit > 0 && (j = s.find(sep, i)) != std::string::npos; --maxsplit) {
        add(s.substr(i, j - i));
        i = j + sep.size();
      }
      add(s.substr(i));
    }
    return Value::MakeList(std::move(parts));
  }

  Value Replace(const std::string& s, const Value& old_v, const Value& new_v, const Value& count_v,
                const Expr& e) {
    const std::string from = StrArg(old_v, e, "old"), to = StrArg(new_v, e, "new");
    int64_t count =
        Missing(count_v) || count_v.kind == Value::kNone ? -1 : IntArg(count_v, e, "count");
    if (count < 0) count = INT64_MAX;
    std::string out;
    auto grow = [&](size_t add) {
      Produce(add);
      if (out.size() + add > limits_.max_output_bytes) Fail(e.line, "replace(): result too long");
    };
    if (from.empty()) {
      const std::u32string cp = Decode(s);
      for (size_t k = 0; k <= cp.size(); ++k) {
        if (count > 0) {
          grow(to.size());
          out += to;
          --count;
        }
        if (k < cp.size()) out += Encode({&cp[k], 1});
      }
      return Value::Str(std::move(out));
    }
    size_t i = 0;
    for (size_t j; count > 0 && (j = s.find(from, i)) != std::string::npos; --count) {
      grow(j - i + to.size());
      out.append(s, i, j - i);
      out += to;
      i = j + from.size();
    }
    grow(s.size() - i);
    out.append(s, i, std::string::npos);
    return Value::Str(std::move(out));
  }

  Value Method(const Expr& e) {
    const Value obj = Eval(*e.args[0]);
    if (obj.kind == Value::kUndefined) FailUndefined(obj, e.line);
    const std::string& m = e.name;
    if (obj.kind == Value::kDict) {
      if (m == "get") {
        const std::vector<Value> a = Args(e, 1, {"key", "default"});
        if (Missing(a[0])) Fail(e.line, "get expected at least 1 argument");
        if (a[0].kind == Value::kString) {
          if (const Value* v = obj.Find(a[0].s)) return *v;
        }
        return Missing(a[1]) ? Value::None() : a[1];
      }
      Args(e, 1, {});
      List items;
      for (const auto& kv : *obj.dict) {
        if (m == "keys") {
          items.push_back(Value::Str(kv.first));
        } else if (m == "values") {
          items.push_back(kv.second);
        } else if (m == "items") {
          items.push_back(Pair(kv.first, kv.second));
        } else {
          Fail(e.line, "'dict' object has no method '" + m + "'");
        }
      }
      return MakeList(std::move(items));
    }
    if (obj.kind != Value::kString) {
      Fail(e.line, std::string("'") + TypeName(obj) + "' object has no method '" + m + "'");
    }
    const std::string& s = obj.s;
    if (m == "strip" || m == "lstrip" || m == "rstrip") {
      const std::vector<Value> a = Args(e, 1, {"chars"});
      return StripValue(s, a[0], e, m != "rstrip", m != "lstrip");
    }
    if (m == "startswith" || m == "endswith") {
      const std::vector<Value> a = Args(e, 1, {"prefix"});
      std::vector<std::string> affixes;
      if (a[0].kind == Value::kList && a[0].tuple) {
        for (const Value& x : *a[0].list) affixes.push_back(StrArg(x, e, "prefix"));
      } else {
        affixes.push_back(StrArg(a[0], e, "prefix"));
      }
      for (const std::string& x : affixes) {
        if (x.size() <= s.size() &&
            s.compare(m == "startswith" ? 0 : s.size() - x.size(), x.size(), x) == 0) {
          return Value::Bool(true);
        }
      }
      return Value::Bool(false);
    }
    if (m == "split") {
      const std::vector<Value> a = Args(e, 1, {"sep", "maxsplit"});
      return Split(s, a[0], a[1], e);
    }
    if (m == "replace") {
      const std::vector<Value> a = Args(e, 1, {"old", "new", "count"});
      return Replace(s, a[0], a[1], a[2], e);
    }
    Args(e, 1, {});
    const int mode = m == "upper"        ? 0
                     : m == "lower"      ? 1
                     : m == "title"      ? 2
                     : m == "capitalize" ? 3
                                         : -1;
    if (mode < 0) Fail(e.line, "'str' object has no method '" + m + "'");
    return MakeStr(CaseMap(s, mode));
  }

  // ---- filters and tests --------------------------------------------------------------------
  int64_t Length(const Value& v, int line) {
    switch (v.kind) {
      case Value::kUndefined:
        return 0;
      case Value::kString:
        return IsAscii(v.s) ? int64_t(v.s.size()) : int64_t(Decode(v.s).size());
      case Value::kList:
        return int64_t(v.list->size());
      case Value::kDict:
        return int64_t(v.dict->size());
      default:
        Fail(line, std::string("object of type '") + TypeName(v) + "' has no len()");
    }
  }

  Value Filter(const Expr& e) {
    const Value v = Eval(*e.args[0]);
    const std::string& f = e.name;
    if (f == "default" || f == "d") {
      const std::vector<Value> a = Args(e, 1, {"default_value", "boolean"});
      const bool boolean = !Missing(a[1]) && Truthy(a[1]);
      if (v.kind == Value::kUndefined || (boolean && !Truthy(v))) {
        return Missing(a[0]) ? Value::Str("") : a[0];
      }
      return v;
    }
    if (f == "tojson") {
      const std::vector<Value> a = Args(e, 1, {"ensure_ascii", "indent"});
      if (!Missing(a[0]) && Truthy(a[0])) Fail(e.line, "unsupported: tojson(ensure_ascii=true)");
      int indent = -1;
      if (!Missing(a[1]) && a[1].kind != Value::kNone) {
        const int64_t n = IntArg(a[1], e, "indent");
        indent = int(std::clamp<int64_t>(n, 0, 64));
      }
      return MakeStr(ToJson(v, indent, e.line));
    }
    if (f == "length" || f == "count") {
      Args(e, 1, {});
      return Value::Int(Length(v, e.line));
    }
    if (f == "join") {
      const std::vector<Value> a = Args(e, 1, {"d"});
      const std::string sep = Missing(a[0]) ? "" : Str(a[0]);
      std::string out;
      bool first = true;
      for (const Value& x : Iterate(v, e.line)) {
        Step();
        const std::string s = Str(x);
        Produce(s.size() + sep.size());
        if (!first) out += sep;
        out += s;
        first = false;
      }
      return MakeStr(std::move(out));
    }
    if (f == "first" || f == "last") {
      Args(e, 1, {});
      const std::vector<Value> items = Iterate(v, e.line);
      if (items.empty()) return Value::Undefined("No " + f + " item, sequence was empty.");
      return f == "first" ? items.front() : items.back();
    }
    if (f == "list") {
      Args(e, 1, {});
      return MakeList(Iterate(v, e.line));
    }
    if (f == "items") {
      Args(e, 1, {});
      if (v.kind == Value::kUndefined) return MakeList({});
      if (v.kind != Value::kDict) Fail(e.line, "items(): can only get item pairs from a mapping");
      List items;
      for (const auto& kv : *v.dict) items.push_back(Pair(kv.first, kv.second));
      return MakeList(std::move(items));
    }
    // The rest work on the string form, as Jinja2's soft_str(value).
    const std::string s = Str(v);
    if (f == "trim") {
      const std::vector<Value> a = Args(e, 1, {"chars"});
      return StripValue(s, a[0], e, true, true);
    }
    if (f == "replace") {
      const std::vector<Value> a = Args(e, 1, {"old", "new", "count"});
      return Replace(s, a[0], a[1], a[2], e);
    }
    Args(e, 1, {});
    if (f == "string") return MakeStr(s);
    const int mode = f == "upper" ? 0 : f == "lower" ? 1 : f == "capitalize" ? 3 : -1;
    if (mode < 0) Fail(e.line, "unknown filter '" + f + "'");
    return MakeStr(CaseMap(s, mode));
  }

  bool Test(const Expr& e) {
    const Value v = Eval(*e.args[0]);
    const std::string& t = e.name;
    if (t == "defined") return v.kind != Value::kUndefined;
    if (t == "undefined") return v.kind == Value::kUndefined;
    if (t == "none") return v.kind == Value::kNone;
    if (t == "string") return v.kind == Value::kString;
    if (t == "mapping") return v.kind == Value::kDict;
    if (t == "number") return v.is_number();
    if (t == "integer") return v.kind == Value::kInt;
    if (t == "boolean") return v.kind == Value::kBool;
    if (t == "true") return v.kind == Value::kBool && v.i;
    if (t == "false") return v.kind == Value::kBool && !v.i;
    if (t == "iterable" || t == "sequence") {
      return v.kind == Value::kUndefined || v.kind == Value::kString || v.kind == Value::kList ||
             v.kind == Value::kDict;
    }
    if (t == "even" || t == "odd" || t == "divisibleby") {
      if (v.kind == Value::kUndefined) FailUndefined(v, e.line);
      if (!v.is_number()) Fail(e.line, "test '" + t + "' needs an integer, not " + TypeName(v));
      if (t != "divisibleby") return (v.i % 2 != 0) == (t == "odd");
      const Value d = Eval(*e.args[1]);
      if (!d.is_number()) Fail(e.line, "divisibleby needs an integer");
      if (d.i == 0) Fail(e.line, "integer division or modulo by zero");
      return d.i == -1 || v.i % d.i == 0;
    }
    const Value other = Eval(*e.args[1]);
    if (t == "ne") return !Equal(v, other);
    return Equal(v, other);  // eq, equalto
  }

  const RenderLimits& limits_;
  std::vector<Dict> scopes_;
  std::string out_;
  uint64_t steps_ = 0, work_ = 0;
  int line_ = 0;
};

std::string Describe(const Error& e, int fallback_line) {
  const int line = e.line > 0 ? e.line : fallback_line;
  return line > 0 ? "chat template line " + std::to_string(line) + ": " + e.message
                  : "chat template: " + e.message;
}

}  // namespace
}  // namespace jinja

Result<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  try {
    return ChatTemplate(std::make_shared<const jinja::Program>(jinja::ParseTemplate(source)));
  } catch (const jinja::Error& e) {
    return Status::Error(jinja::Describe(e, 0));
  } catch (const std::bad_alloc&) {
    return Status::Error("chat template: out of memory while parsing");
  }
}

Result<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt,
                                         const ChatSpecialTokens& tokens,
                                         const RenderLimits& limits) const {
  jinja::Renderer renderer(limits);
  try {
    jinja::List list;
    list.reserve(messages.size());
    for (const ChatMessage& m : messages) {
      list.push_back(jinja::Value::MakeDict(
          {{"role", jinja::Value::Str(m.role)}, {"content", jinja::Value::Str(m.content)}}));
    }
    jinja::Dict globals = {{"messages", jinja::Value::MakeList(std::move(list))},
                           {"add_generation_prompt", jinja::Value::Bool(add_generation_prompt)}};
    if (tokens.bos_token) globals.emplace_back("bos_token", jinja::Value::Str(*tokens.bos_token));
    if (tokens.eos_token) globals.emplace_back("eos_token", jinja::Value::Str(*tokens.eos_token));
    return renderer.Run(*program_, std::move(globals));
  } catch (const jinja::Error& e) {
    return Status::Error(jinja::Describe(e, renderer.line()));
  } catch (const std::bad_alloc&) {
    return Status::Error("chat template: out of memory while rendering");
  }
}

const std::string& ChatTemplate::source() const {
  return program_->source;
}

}  // namespace mobilellm
