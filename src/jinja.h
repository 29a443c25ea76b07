// The chat-template interpreter's internals (include/mobilellm/chat_template.h is the API):
// values, the syntax tree Parse builds and Render walks, and the Python string semantics both
// need. Not a public header.
//
//   jinja_parse.cpp   lexer (whitespace control as Jinja2's lexer does it) + recursive-descent
//                     parser (Jinja2's precedence), refusing what the evaluator cannot run;
//   jinja_value.cpp   values as Python sees them: str(), repr(), json.dumps, ==, <, UTF-8;
//   jinja_eval.cpp    the tree walker, filters, tests, methods, and the ChatTemplate API.
//
// Errors inside the interpreter are thrown as jinja::Error and turned into a Status at the API
// boundary; nothing else throws through it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mobilellm::jinja {

struct Error {
  int line;  // 0: not tied to a line
  std::string message;
};
[[noreturn]] void Fail(int line, std::string message);

// Deepest nesting of syntax (blocks + expressions) and of values (lists in lists); keeps the
// recursive parser, evaluator, printers and destructors far from the stack's end.
inline constexpr int kMaxDepth = 64;
// Tallest expression tree (a + b + c + ... nests to the left without any parenthesis).
inline constexpr int kMaxHeight = 256;

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict

struct Value {
  enum Kind : uint8_t { kUndefined, kNone, kBool, kInt, kString, kList, kDict, kNamespace };
  Kind kind = kUndefined;
  uint8_t depth = 0;   // lists/dicts: 1 + the deepest element's depth
  bool tuple = false;  // a list Python would hold as a tuple (dict.items()): printed (a, b)
  int64_t i = 0;       // kBool (0/1), kInt
  std::string s;       // kString; kUndefined: what was undefined, for the error message
  std::shared_ptr<const List> list;  // kList
  std::shared_ptr<const Dict> dict;  // kDict
  std::shared_ptr<Dict> ns;          // kNamespace: the one mutable kind

  static Value Undefined(std::string what) {
    Value v;
    v.s = std::move(what);
    return v;
  }
  static Value None() { return Make(kNone); }
  static Value Bool(bool b) {
    Value v = Make(kBool);
    v.i = b;
    return v;
  }
  static Value Int(int64_t n) {
    Value v = Make(kInt);
    v.i = n;
    return v;
  }
  static Value Str(std::string text) {
    Value v = Make(kString);
    v.s = std::move(text);
    return v;
  }
  static Value MakeList(List items);  // Fail()s beyond kMaxDepth
  static Value MakeDict(Dict items);

  bool is_number() const { return kind == kInt || kind == kBool; }
  const Value* Find(std::string_view key) const;  // dict/namespace entry or nullptr

 private:
  static Value Make(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
};

// Python semantics of the values.
bool Truthy(const Value& v);
std::string Str(const Value& v);   // str(v); undefined is ""
std::string Repr(const Value& v);  // repr(v)
// json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: None).
std::string ToJson(const Value& v, int indent, int line);
bool Equal(const Value& a, const Value& b);
int Compare(const Value& a, const Value& b, int line);  // <0, 0, >0; Fail()s on mixed types
const char* TypeName(const Value& v);                   // "str", "int", "list", ...

// UTF-8 as Python str: invalid bytes are kept as lone code points 0xDC80 + byte (Python's
// surrogateescape), so decoding and re-encoding gives back the same bytes.
std::u32string Decode(std::string_view s);
std::string Encode(std::u32string_view s);
bool IsAscii(std::string_view s);
bool IsSpace(char32_t c);  // str.isspace()
char32_t Upper(char32_t c);
char32_t Lower(char32_t c);
bool IsCased(char32_t c);

// ---- syntax tree ------------------------------------------------------------------------------
enum class Op : uint8_t {
  kLiteral,
  kName,
  kList,
  kDict,  // kDict args: key, value, key, value, ...
  kAttr,
  kItem,
  kSlice,   // kSlice args: object, start, stop, step (null = none)
  kCall,    // name(args...): namespace, raise_exception, range
  kMethod,  // args[0].name(args[1..])
  kFilter,
  kTest,  // args[0] | name(args[1..]);  args[0] is name(...)
  kNot,
  kNeg,
  kPos,
  kAdd,
  kSub,
  kMul,
  kFloorDiv,
  kMod,
  kPow,
  kConcat,
  kAnd,
  kOr,
  kCond,     // kCond args: then, condition, else (may be null)
  kCompare,  // args[0] ops[0] args[1] ops[1] args[2] ...
};
enum class CmpOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Expr {
  Op op;
  int line;
  int height = 1;       // 1 + the tallest argument's height; at most kMaxHeight
  bool negate = false;  // kTest: `is not`
  std::string name;     // kName, kAttr, kCall, kMethod, kFilter, kTest
  Value literal;        // kLiteral
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::string> kwarg_names;  // the last kwarg_names.size() args are keyword args
  std::vector<CmpOp> cmp;
};
using ExprPtr = std::unique_ptr<Expr>;

enum class NodeKind : uint8_t { kText, kOutput, kIf, kFor, kSet, kSetAttr, kBreak, kContinue };

struct Node {
  Node(NodeKind k, int l) : kind(k), line(l) {}
  NodeKind kind;
  int line;
  std::string text;                  // kText
  std::vector<std::string> targets;  // kFor/kSet names; kSetAttr: {namespace, attribute}
  ExprPtr expr;                      // kOutput, kSet/kSetAttr value, kFor iterable
  ExprPtr filter;                    // kFor: `if` condition, may be null
  std::vector<std::pair<ExprPtr, std::vector<Node>>> branches;  // kIf; else: null condition
  std::vector<Node> body, else_body;                            // kFor
};

struct Program {
  std::string source;
  std::vector<Node> nodes;
};

// Parses a whole template (newlines normalized, one trailing newline dropped, as Jinja2 does).
Program ParseTemplate(std::string_view source);

}  // namespace mobilellm::jinja
