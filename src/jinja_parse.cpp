// Chat-template lexer and parser: template text -> jinja::Program.
//
// The lexer reproduces Jinja2's (jinja2/lexer.py) with trim_blocks and lstrip_blocks on: text
// runs, `{% %}` / `{{ }}` tags whose expression tokens it splits, comments dropped, and the
// whitespace rules applied to the text around tags. The parser is recursive descent with
// Jinja2's precedence (jinja2/parser.py) and refuses, with its line, every construct the
// evaluator does not implement, so a template that parses can only fail at render time on its
// data (an undefined attribute, raise_exception, a limit).
#include <cstring>
#include <set>

#include "jinja.h"

namespace mobilellm::jinja {
namespace {

enum class Tok {
  kText,
  kBlockBegin,
  kBlockEnd,
  kVarBegin,
  kVarEnd,
  kName,
  kString,
  kInt,
  kOp,
  kEof
};

struct Token {
  Tok type;
  int line;
  std::string text;   // kText, kName, kString (unescaped), kOp
  int64_t value = 0;  // kInt
};

// Length in bytes of the Python-whitespace code point at s[pos], or 0.
size_t SpaceAt(std::string_view s, size_t pos) {
  const unsigned char c = s[pos];
  if (c < 0x80) return IsSpace(c) ? 1 : 0;
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (pos + n > s.size()) return 0;
  const std::u32string cp = Decode(s.substr(pos, n));
  return cp.size() == 1 && IsSpace(cp[0]) ? n : 0;
}

// Bytes of s before its trailing Python whitespace (str.rstrip()).
size_t RStripLength(std::string_view s) {
  const std::u32string cp = Decode(s);
  size_t n = cp.size();
  while (n > 0 && IsSpace(cp[n - 1])) --n;
  return Encode(std::u32string_view(cp).substr(0, n)).size();
}

bool AllSpace(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = SpaceAt(s, i);
    if (n == 0) return false;
    i += n;
  }
  return !s.empty();
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> Run() {
    while (pos_ < src_.size()) {
      size_t tag = std::string_view::npos;
      for (size_t q = src_.find('{', pos_); q != std::string_view::npos && q + 1 < src_.size();
           q = src_.find('{', q + 1)) {
        if (src_[q + 1] == '{' || src_[q + 1] == '%' || src_[q + 1] == '#') {
          tag = q;
          break;
        }
      }
      if (tag == std::string_view::npos) {
        EmitText(src_.substr(pos_), src_.size());
        break;
      }
      const char kind = src_[tag + 1];
      size_t after = tag + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      size_t raw_end = 0;
      const bool raw = kind == '%' && MatchRawBegin(after, &raw_end);
      EmitText(StripBefore(src_.substr(pos_, tag - pos_), sign, kind != '{'), tag);
      if (raw) {
        LexRaw(raw_end);
      } else if (kind == '#') {
        LexComment(after);
      } else {
        Emit(kind == '%' ? Tok::kBlockBegin : Tok::kVarBegin, "");
        Advance(after);
        LexTag(kind == '%');
      }
    }
    Emit(Tok::kEof, "");
    return std::move(tokens_);
  }

 private:
  // The text before a tag, after the whitespace rules: `-` strips all trailing whitespace;
  // otherwise (lstrip_blocks, block and comment tags, no `+`) spaces and tabs between the last
  // line start and the tag go.
  std::string_view StripBefore(std::string_view text, char sign, bool lstrip) const {
    if (sign == '-') return text.substr(0, RStripLength(text));
    if (sign == '+' || !lstrip) return text;
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    const bool line_starting = pos_ == 0 || src_[pos_ - 1] == '\n';
    if ((l_pos > 0 || line_starting) && AllSpace(text.substr(l_pos))) return text.substr(0, l_pos);
    return text;
  }

  // `{%[-+]? \s* raw \s* (-%}\s* | %})` starting after the sign; *end is past it.
  bool MatchRawBegin(size_t p, size_t* end) const {
    p = SkipSpace(p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = SkipSpace(p + 3);
    if (src_.compare(p, 3, "-%}") == 0) {
      *end = SkipSpace(p + 3);
      return true;
    }
    if (src_.compare(p, 2, "%}") == 0) {
      *end = p + 2;
      return true;
    }
    return false;
  }

  void LexRaw(size_t content) {
    const int line = line_;
    for (size_t q = src_.find("{%", content); q != std::string_view::npos;
         q = src_.find("{%", q + 1)) {
      size_t p = q + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = SkipSpace(p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = SkipSpace(p + 6);
      size_t end;
      if (src_.compare(p, 3, "+%}") == 0) {
        end = p + 3;
      } else if (src_.compare(p, 3, "-%}") == 0) {
        end = SkipSpace(p + 3);
      } else if (src_.compare(p, 2, "%}") == 0) {
        end = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n');
      } else {
        continue;
      }
      Advance(content);
      EmitText(StripBefore(src_.substr(content, q - content), sign, true), q);
      Advance(end);
      return;
    }
    Fail(line, "{% raw %} without {% endraw %}");
  }

  void LexComment(size_t p) {
    const int line = line_;
    const size_t e = src_.find("#}", p);
    if (e == std::string_view::npos) Fail(line, "unclosed comment {# ... #}");
    const char sign = e > p && (src_[e - 1] == '-' || src_[e - 1] == '+') ? src_[e - 1] : 0;
    size_t end = e + 2;
    if (sign == '-') {
      end = SkipSpace(end);
    } else if (sign == 0 && end < src_.size() && src_[end] == '\n') {
      ++end;  // trim_blocks
    }
    Advance(end);
  }

  void LexTag(bool block) {
    std::vector<char> balance;
    const int start_line = line_;
    for (;;) {
      Advance(SkipSpace(pos_));
      if (pos_ >= src_.size()) {
        Fail(start_line, block ? "unclosed tag: expected '%}'" : "unclosed tag: expected '}}'");
      }
      const std::string_view rest = src_.substr(pos_);
      if (balance.empty()) {
        if (block && (rest.substr(0, 3) == "+%}" || rest.substr(0, 3) == "-%}" ||
                      rest.substr(0, 2) == "%}")) {
          Emit(Tok::kBlockEnd, "");
          if (rest[0] == '+') {
            Advance(pos_ + 3);
          } else if (rest[0] == '-') {
            Advance(SkipSpace(pos_ + 3));
          } else {
            Advance(pos_ + 2 + (rest.size() > 2 && rest[2] == '\n'));  // trim_blocks
          }
          return;
        }
        if (!block && (rest.substr(0, 3) == "-}}" || rest.substr(0, 2) == "}}")) {
          Emit(Tok::kVarEnd, "");
          Advance(rest[0] == '-' ? SkipSpace(pos_ + 3) : pos_ + 2);
          return;
        }
      }
      const char c = rest[0];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t n = 1;
        while (n < rest.size() &&
               (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) {
          ++n;
        }
        Emit(Tok::kName, std::string(rest.substr(0, n)));
        Advance(pos_ + n);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        LexNumber(rest);
      } else if (c == '\'' || c == '"') {
        LexString(rest);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
        const char* op = nullptr;
        for (const char* o : kOps) {
          if (rest.substr(0, std::strlen(o)) == o) {
            op = o;
            break;
          }
        }
        if (op == nullptr) {
          Fail(line_, "unexpected character '" + std::string(1, c) + "' in a tag");
        }
        if (*op == '(' || *op == '[' || *op == '{') balance.push_back(*op);
        if ((*op == ')' || *op == ']' || *op == '}') && !op[1]) {
          const char open = *op == ')' ? '(' : *op == ']' ? '[' : '{';
          if (balance.empty() || balance.back() != open) {
            Fail(line_, std::string("unexpected '") + op + "'");
          }
          balance.pop_back();
        }
        Emit(Tok::kOp, op);
        Advance(pos_ + std::strlen(op));
      }
    }
  }

  void LexNumber(std::string_view rest) {
    size_t n = 0;
    int64_t value = 0;
    while (n < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[n])) ||
                               (rest[n] == '_' && n + 1 < rest.size() &&
                                std::isdigit(static_cast<unsigned char>(rest[n + 1]))))) {
      if (rest[n] != '_' && (__builtin_mul_overflow(value, 10, &value) ||
                             __builtin_add_overflow(value, rest[n] - '0', &value))) {
        Fail(line_, "integer literal too large");
      }
      ++n;
    }
    if (n < rest.size() && (rest[n] == '.' || rest[n] == 'e' || rest[n] == 'E') &&
        n + 1 < rest.size() &&
        (std::isdigit(static_cast<unsigned char>(rest[n + 1])) || rest[n + 1] == '+' ||
         rest[n + 1] == '-')) {
      Fail(line_, "unsupported construct: float literal");
    }
    Token t{Tok::kInt, line_, std::string(rest.substr(0, n)), value};
    tokens_.push_back(std::move(t));
    Advance(pos_ + n);
  }

  // A Python string literal, unescaped as Jinja2 does (the unicode-escape codec).
  void LexString(std::string_view rest) {
    const char quote = rest[0];
    std::u32string out;
    size_t i = 1;
    const int line = line_;
    auto hex = [&](size_t digits) {
      if (i + digits > rest.size()) Fail(line_, "truncated \\x, \\u or \\U escape in a string");
      uint32_t v = 0;
      for (size_t k = 0; k < digits; ++k) {
        const char h = rest[i + k];
        if (!std::isxdigit(static_cast<unsigned char>(h))) {
          Fail(line_, "bad \\x, \\u or \\U escape in a string");
        }
        v = v * 16 +
            (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      i += digits;
      if (v > 0x10FFFF || (v >= 0xD800 && v < 0xE000)) {
        Fail(line_, "unsupported escape: a surrogate or out-of-range code point");
      }
      out.push_back(v);
    };
    for (;;) {
      if (i >= rest.size()) Fail(line, "unterminated string literal");
      const char c = rest[i];
      if (c == quote) break;
      if (c != '\\') {
        const size_t start = i++;
        while (i < rest.size() && rest[i] != quote && rest[i] != '\\') ++i;
        out += Decode(rest.substr(start, i - start));
        continue;
      }
      if (++i >= rest.size()) Fail(line, "unterminated string literal");
      const char e = rest[i++];
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
          out.push_back('\\');
          break;
        case '\'':
          out.push_back('\'');
          break;
        case '"':
          out.push_back('"');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
          hex(2);
          break;
        case 'u':
          hex(4);
          break;
        case 'U':
          hex(8);
          break;
        case 'N':
          Fail(line_, "unsupported escape \\N{...} in a string");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = e - '0';
            for (int k = 0; k < 2 && i < rest.size() && rest[i] >= '0' && rest[i] <= '7'; ++k) {
              v = v * 8 + (rest[i++] - '0');
            }
            out.push_back(v);
          } else {
            out.push_back('\\');
            --i;  // the character itself is read again as text
          }
      }
    }
    Token t{Tok::kString, line_, Encode(out)};
    tokens_.push_back(std::move(t));
    Advance(pos_ + i + 1);
  }

  size_t SkipSpace(size_t p) const {
    while (p < src_.size()) {
      const size_t n = SpaceAt(src_, p);
      if (n == 0) break;
      p += n;
    }
    return p;
  }

  void Advance(size_t to) {
    for (; pos_ < to; ++pos_) line_ += src_[pos_] == '\n';
  }

  void Emit(Tok type, std::string text) { tokens_.push_back({type, line_, std::move(text)}); }

  // Emits text (a piece of the source that starts at pos_) and moves pos_ to `next`.
  void EmitText(std::string_view text, size_t next) {
    if (!text.empty()) Emit(Tok::kText, std::string(text));
    Advance(next);
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::vector<Node> ParseTemplate() {
    std::string end;
    std::vector<Node> nodes = ParseBody({}, &end);
    return nodes;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > kMaxDepth) {
        Fail(p->Peek().line, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
      }
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  const Token& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  Token Next() {
    Token t = Peek();
    if (i_ < t_.size() - 1) ++i_;
    return t;
  }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).type == Tok::kOp && Peek(ahead).text == op;
  }
  bool IsName(const char* name, size_t ahead = 0) const {
    return Peek(ahead).type == Tok::kName && Peek(ahead).text == name;
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Tok::kText:
        return "text";
      case Tok::kBlockBegin:
        return "'{%'";
      case Tok::kBlockEnd:
        return "'%}'";
      case Tok::kVarBegin:
        return "'{{'";
      case Tok::kVarEnd:
        return "'}}'";
      case Tok::kEof:
        return "end of template";
      case Tok::kString:
        return "a string";
      case Tok::kInt:
        return "'" + t.text + "'";
      default:
        return "'" + t.text + "'";
    }
  }
  [[noreturn]] void Unexpected(const std::string& expected) const {
    Fail(Peek().line, "expected " + expected + ", found " + Describe(Peek()));
  }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Unexpected(std::string("'") + op + "'");
    Next();
  }
  void ExpectBlockEnd() {
    if (Peek().type != Tok::kBlockEnd) Unexpected("'%}'");
    Next();
  }
  std::string ExpectName() {
    if (Peek().type != Tok::kName) Unexpected("a name");
    return Next().text;
  }

  static ExprPtr Make(Op op, int line, std::vector<ExprPtr> args = {}) {
    auto e = std::make_unique<Expr>();
    e->op = op;
    e->line = line;
    for (const ExprPtr& a : args) {
      if (a) e->height = std::max(e->height, a->height + 1);
    }
    if (e->height > kMaxHeight) {
      Fail(line, "expression deeper than " + std::to_string(kMaxHeight) + " levels");
    }
    e->args = std::move(args);
    return e;
  }

  // Nodes until a `{% name %}` with name in `ends` (consumed up to the name; *end = the name) or
  // the end of the template (only when `ends` is empty).
  std::vector<Node> ParseBody(const std::set<std::string>& ends, std::string* end) {
    DepthGuard guard(this);
    std::vector<Node> nodes;
    for (;;) {
      const Token& t = Peek();
      if (t.type == Tok::kEof) {
        if (!ends.empty()) {
          Fail(t.line, "unexpected end of template: expected {% " + *ends.rbegin() + " %}");
        }
        return nodes;
      }
      if (t.type == Tok::kText) {
        Node n(NodeKind::kText, t.line);
        n.text = Next().text;
        nodes.push_back(std::move(n));
        continue;
      }
      if (t.type == Tok::kVarBegin) {
        Node n(NodeKind::kOutput, Next().line);
        n.expr = ParseExpression(true);
        if (IsOp(",")) Fail(Peek().line, "unsupported construct: a tuple in {{ }}");
        if (Peek().type != Tok::kVarEnd) Unexpected("'}}'");
        Next();
        nodes.push_back(std::move(n));
        continue;
      }
      if (t.type != Tok::kBlockBegin) Unexpected("text, '{{' or '{%'");
      const int line = Next().line;
      if (Peek().type != Tok::kName) Unexpected("a statement name after '{%'");
      const std::string name = Peek().text;
      if (ends.count(name)) {
        Next();
        *end = name;
        return nodes;
      }
      ParseStatement(line, &nodes);
    }
  }

  void ParseStatement(int line, std::vector<Node>* nodes) {
    const std::string name = Next().text;
    if (name == "if") {
      Node n(NodeKind::kIf, line);
      std::string end = "if";
      while (end == "if" || end == "elif") {
        ExprPtr cond = ParseExpression(false);
        ExpectBlockEnd();
        std::vector<Node> body = ParseBody({"elif", "else", "endif"}, &end);
        n.branches.emplace_back(std::move(cond), std::move(body));
      }
      if (end == "else") {
        ExpectBlockEnd();
        n.branches.emplace_back(nullptr, ParseBody({"endif"}, &end));
      }
      ExpectBlockEnd();
      nodes->push_back(std::move(n));
    } else if (name == "for") {
      Node n(NodeKind::kFor, line);
      n.targets = ParseTargets();
      if (!IsName("in")) Unexpected("'in'");
      Next();
      n.expr = ParseExpression(false);
      if (IsName("if")) {
        Next();
        n.filter = ParseExpression(true);
      }
      if (IsName("recursive")) Fail(Peek().line, "unsupported construct: recursive for loop");
      ExpectBlockEnd();
      ++loops_;
      std::string end;
      n.body = ParseBody({"else", "endfor"}, &end);
      --loops_;
      if (end == "else") {
        ExpectBlockEnd();
        n.else_body = ParseBody({"endfor"}, &end);
      }
      ExpectBlockEnd();
      nodes->push_back(std::move(n));
    } else if (name == "set") {
      Node n(NodeKind::kSet, line);
      if (Peek().type == Tok::kName && IsOp(".", 1)) {
        n.kind = NodeKind::kSetAttr;
        n.targets.push_back(Next().text);
        Next();
        n.targets.push_back(ExpectName());
      } else {
        n.targets = ParseTargets();
      }
      if (Peek().type == Tok::kBlockEnd) {
        Fail(line, "unsupported construct '{% set %}...{% endset %}' (a block set)");
      }
      ExpectOp("=");
      n.expr = ParseExpression(true);
      if (IsOp(",")) {
        std::vector<ExprPtr> items;
        items.push_back(std::move(n.expr));
        while (IsOp(",")) {
          Next();
          if (Peek().type == Tok::kBlockEnd) break;
          items.push_back(ParseExpression(true));
        }
        n.expr = Make(Op::kList, line, std::move(items));
      }
      ExpectBlockEnd();
      nodes->push_back(std::move(n));
    } else if (name == "break" || name == "continue") {
      if (loops_ == 0) Fail(line, "'{% " + name + " %}' outside a for loop");
      ExpectBlockEnd();
      nodes->push_back(Node(name == "break" ? NodeKind::kBreak : NodeKind::kContinue, line));
    } else if (name == "generation") {
      // transformers' AssistantTracker: marks assistant text; renders its body unchanged.
      ExpectBlockEnd();
      std::string end;
      std::vector<Node> body = ParseBody({"endgeneration"}, &end);
      ExpectBlockEnd();
      for (Node& b : body) nodes->push_back(std::move(b));
    } else {
      static const std::set<std::string> kJinjaTags = {
          "macro", "call",       "filter", "block", "extends", "include", "import",   "from",
          "with",  "autoescape", "do",     "trans", "print",   "endset",  "pluralize"};
      if (kJinjaTags.count(name)) Fail(line, "unsupported construct '{% " + name + " %}'");
      Fail(line, "unknown or misplaced tag '{% " + name + " %}'");
    }
  }

  // `a`, `a, b` or `(a, b)`: the names a for loop or a set binds.
  std::vector<std::string> ParseTargets() {
    std::vector<std::string> names;
    const bool paren = IsOp("(");
    if (paren) Next();
    names.push_back(ExpectName());
    while (IsOp(",")) {
      Next();
      if (Peek().type != Tok::kName) break;
      names.push_back(ExpectName());
    }
    if (paren) ExpectOp(")");
    for (const std::string& n : names) {
      if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" ||
          n == "None" || n == "loop") {
        Fail(Peek().line, "cannot assign to '" + n + "'");
      }
    }
    return names;
  }

  ExprPtr ParseExpression(bool condexpr) {
    DepthGuard guard(this);
    ExprPtr e = ParseOr();
    if (!condexpr) return e;
    while (IsName("if")) {
      const int line = Next().line;
      ExprPtr cond = ParseOr();
      ExprPtr otherwise;
      if (IsName("else")) {
        Next();
        otherwise = ParseExpression(true);
      }
      std::vector<ExprPtr> args;
      args.push_back(std::move(e));
      args.push_back(std::move(cond));
      args.push_back(std::move(otherwise));
      e = Make(Op::kCond, line, std::move(args));
    }
    return e;
  }

  ExprPtr Binary(Op op, int line, ExprPtr a, ExprPtr b) {
    std::vector<ExprPtr> args;
    args.push_back(std::move(a));
    args.push_back(std::move(b));
    return Make(op, line, std::move(args));
  }

  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    while (IsName("or")) {
      const int line = Next().line;
      e = Binary(Op::kOr, line, std::move(e), ParseAnd());
    }
    return e;
  }
  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    while (IsName("and")) {
      const int line = Next().line;
      e = Binary(Op::kAnd, line, std::move(e), ParseNot());
    }
    return e;
  }
  ExprPtr ParseNot() {
    if (!IsName("not")) return ParseCompare();
    DepthGuard guard(this);
    const int line = Next().line;
    std::vector<ExprPtr> args;
    args.push_back(ParseNot());
    return Make(Op::kNot, line, std::move(args));
  }
  ExprPtr ParseCompare() {
    ExprPtr first = ParseMath1();
    std::vector<ExprPtr> args;
    std::vector<CmpOp> ops;
    const int line = Peek().line;
    for (;;) {
      static const std::pair<const char*, CmpOp> kOps[] = {{"==", CmpOp::kEq}, {"!=", CmpOp::kNe},
                                                           {"<", CmpOp::kLt},  {"<=", CmpOp::kLe},
                                                           {">", CmpOp::kGt},  {">=", CmpOp::kGe}};
      bool found = false;
      for (const auto& [text, op] : kOps) {
        if (IsOp(text)) {
          Next();
          ops.push_back(op);
          found = true;
          break;
        }
      }
      if (!found && IsName("in")) {
        Next();
        ops.push_back(CmpOp::kIn);
        found = true;
      } else if (!found && IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        ops.push_back(CmpOp::kNotIn);
        found = true;
      }
      if (!found) break;
      if (args.empty()) args.push_back(std::move(first));
      args.push_back(ParseMath1());
    }
    if (args.empty()) return first;
    ExprPtr e = Make(Op::kCompare, line, std::move(args));
    e->cmp = std::move(ops);
    return e;
  }
  ExprPtr ParseMath1() {
    ExprPtr e = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Op op = Peek().text == "+" ? Op::kAdd : Op::kSub;
      const int line = Next().line;
      e = Binary(op, line, std::move(e), ParseConcat());
    }
    return e;
  }
  ExprPtr ParseConcat() {
    ExprPtr e = ParseMath2();
    while (IsOp("~")) {
      const int line = Next().line;
      e = Binary(Op::kConcat, line, std::move(e), ParseMath2());
    }
    return e;
  }
  ExprPtr ParseMath2() {
    ExprPtr e = ParsePow();
    for (;;) {
      Op op;
      if (IsOp("*")) {
        op = Op::kMul;
      } else if (IsOp("//")) {
        op = Op::kFloorDiv;
      } else if (IsOp("%")) {
        op = Op::kMod;
      } else if (IsOp("/")) {
        Fail(Peek().line, "unsupported construct: '/' (float division; use '//')");
      } else {
        return e;
      }
      const int line = Next().line;
      e = Binary(op, line, std::move(e), ParsePow());
    }
  }
  ExprPtr ParsePow() {
    ExprPtr e = ParseUnary(true);
    while (IsOp("**")) {
      const int line = Next().line;
      e = Binary(Op::kPow, line, std::move(e), ParseUnary(true));
    }
    return e;
  }
  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      const Op op = Peek().text == "-" ? Op::kNeg : Op::kPos;
      const int line = Next().line;
      std::vector<ExprPtr> args;
      args.push_back(ParseUnary(false));
      e = Make(op, line, std::move(args));
    } else {
      e = ParsePrimary();
    }
    e = ParsePostfix(std::move(e));
    if (with_filter) e = ParseFilters(std::move(e));
    return e;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Peek();
    const int line = t.line;
    if (t.type == Tok::kName) {
      const std::string name = Next().text;
      ExprPtr e = Make(Op::kLiteral, line);
      if (name == "true" || name == "True") {
        e->literal = Value::Bool(true);
      } else if (name == "false" || name == "False") {
        e->literal = Value::Bool(false);
      } else if (name == "none" || name == "None") {
        e->literal = Value::None();
      } else {
        e->op = Op::kName;
        e->name = name;
      }
      return e;
    }
    if (t.type == Tok::kString) {
      std::string s = Next().text;
      while (Peek().type == Tok::kString) s += Next().text;  // adjacent literals concatenate
      ExprPtr e = Make(Op::kLiteral, line);
      e->literal = Value::Str(std::move(s));
      return e;
    }
    if (t.type == Tok::kInt) {
      ExprPtr e = Make(Op::kLiteral, line);
      e->literal = Value::Int(Next().value);
      return e;
    }
    if (IsOp("(")) {
      Next();
      if (IsOp(")")) Fail(line, "unsupported construct: empty tuple '()'");
      ExprPtr e = ParseExpression(true);
      if (IsOp(",")) Fail(line, "unsupported construct: tuple (use a list [a, b])");
      ExpectOp(")");
      return e;
    }
    if (IsOp("[")) {
      Next();
      std::vector<ExprPtr> items;
      while (!IsOp("]")) {
        items.push_back(ParseExpression(true));
        if (!IsOp(",")) break;
        Next();
      }
      ExpectOp("]");
      return Make(Op::kList, line, std::move(items));
    }
    if (IsOp("{")) {
      Next();
      std::vector<ExprPtr> items;
      while (!IsOp("}")) {
        items.push_back(ParseExpression(true));
        ExpectOp(":");
        items.push_back(ParseExpression(true));
        if (!IsOp(",")) break;
        Next();
      }
      ExpectOp("}");
      return Make(Op::kDict, line, std::move(items));
    }
    Unexpected("an expression");
  }

  ExprPtr ParsePostfix(ExprPtr e) {
    for (;;) {
      const int line = Peek().line;
      if (IsOp(".")) {
        Next();
        if (Peek().type == Tok::kInt) {
          ExprPtr index = Make(Op::kLiteral, line);
          index->literal = Value::Int(Next().value);
          e = Binary(Op::kItem, line, std::move(e), std::move(index));
          continue;
        }
        const std::string attr = ExpectName();
        if (IsOp("(")) {
          e = ParseMethodCall(std::move(e), attr, line);
          continue;
        }
        std::vector<ExprPtr> args;
        args.push_back(std::move(e));
        e = Make(Op::kAttr, line, std::move(args));
        e->name = attr;
      } else if (IsOp("[")) {
        Next();
        ExprPtr start, stop, step;
        bool slice = false;
        if (!IsOp(":")) start = ParseExpression(true);
        if (IsOp(":")) {
          slice = true;
          Next();
          if (!IsOp("]") && !IsOp(":")) stop = ParseExpression(true);
          if (IsOp(":")) {
            Next();
            if (!IsOp("]")) step = ParseExpression(true);
          }
        }
        if (IsOp(",")) Fail(line, "unsupported construct: tuple subscript");
        ExpectOp("]");
        std::vector<ExprPtr> args;
        args.push_back(std::move(e));
        args.push_back(std::move(start));
        if (slice) {
          args.push_back(std::move(stop));
          args.push_back(std::move(step));
        }
        e = Make(slice ? Op::kSlice : Op::kItem, line, std::move(args));
      } else if (IsOp("(")) {
        if (e->op != Op::kName) Fail(line, "unsupported construct: calling an expression");
        static const std::set<std::string> kFunctions = {"namespace", "raise_exception", "range"};
        if (!kFunctions.count(e->name)) {
          Fail(line, "unsupported construct: function '" + e->name + "()'");
        }
        ExprPtr call = Make(Op::kCall, line);
        call->name = e->name;
        ParseArgs(call.get());
        e = std::move(call);
      } else {
        return e;
      }
    }
  }

  ExprPtr ParseMethodCall(ExprPtr object, const std::string& method, int line) {
    static const std::set<std::string> kMethods = {
        "strip", "lstrip",  "rstrip",     "startswith", "endswith", "split",  "title", "upper",
        "lower", "replace", "capitalize", "items",      "keys",     "values", "get"};
    if (!kMethods.count(method)) Fail(line, "unsupported construct: method '." + method + "()'");
    std::vector<ExprPtr> args;
    args.push_back(std::move(object));
    ExprPtr e = Make(Op::kMethod, line, std::move(args));
    e->name = method;
    ParseArgs(e.get());
    return e;
  }

  // `(a, b, key=c)`, appended to e->args (keyword arguments last, named in kwarg_names).
  void ParseArgs(Expr* e) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().type == Tok::kName && IsOp("=", 1)) {
        e->kwarg_names.push_back(Next().text);
        Next();
      } else if (!e->kwarg_names.empty()) {
        Fail(Peek().line, "positional argument after a keyword argument");
      } else if (IsOp("*") || IsOp("**")) {
        Fail(Peek().line, "unsupported construct: *args / **kwargs");
      }
      ExprPtr a = ParseExpression(true);
      e->height = std::max(e->height, a->height + 1);
      if (e->height > kMaxHeight) Fail(e->line, "expression too deep");
      e->args.push_back(std::move(a));
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp(")");
  }

  ExprPtr ParseFilters(ExprPtr e) {
    for (;;) {
      const int line = Peek().line;
      if (IsOp("|")) {
        Next();
        const std::string name = ExpectName();
        static const std::set<std::string> kFilters = {
            "trim", "length",  "count", "upper", "lower",  "tojson", "default", "d",
            "join", "replace", "first", "last",  "string", "list",   "items",   "capitalize"};
        if (!kFilters.count(name)) Fail(line, "unsupported construct: filter '" + name + "'");
        std::vector<ExprPtr> args;
        args.push_back(std::move(e));
        e = Make(Op::kFilter, line, std::move(args));
        e->name = name;
        if (IsOp("(")) ParseArgs(e.get());
      } else if (IsName("is")) {
        Next();
        bool negate = false;
        if (IsName("not")) {
          Next();
          negate = true;
        }
        const std::string name = IsName("none") ? Next().text : ExpectName();
        static const std::set<std::string> kTests = {
            "defined", "undefined", "none",        "string", "mapping",  "number",
            "integer", "boolean",   "true",        "false",  "iterable", "sequence",
            "even",    "odd",       "divisibleby", "eq",     "equalto",  "ne"};
        if (!kTests.count(name)) Fail(line, "unsupported construct: test 'is " + name + "'");
        std::vector<ExprPtr> args;
        args.push_back(std::move(e));
        e = Make(Op::kTest, line, std::move(args));
        e->name = name;
        e->negate = negate;
        if (IsOp("(")) {
          ParseArgs(e.get());
        } else if (Peek().type == Tok::kString || Peek().type == Tok::kInt ||
                   (Peek().type == Tok::kName && !IsName("else") && !IsName("or") &&
                    !IsName("and")) ||
                   IsOp("[") || IsOp("{")) {
          // Jinja2 takes one bare argument: `x is divisibleby 3`.
          ExprPtr arg = ParsePostfix(ParsePrimary());
          e->height = std::max(e->height, arg->height + 1);
          e->args.push_back(std::move(arg));
        }
        const bool binary =
            name == "divisibleby" || name == "eq" || name == "equalto" || name == "ne";
        if (!e->kwarg_names.empty() || e->args.size() != (binary ? 2u : 1u)) {
          Fail(line, "test 'is " + name + "' takes " + (binary ? "one argument" : "no argument"));
        }
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

Program ParseTemplate(std::string_view source) {
  Program p;
  p.source = std::string(source);
  // Jinja2 normalizes \r\n and \r to \n and drops one trailing newline (keep_trailing_newline).
  std::string text;
  text.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      text += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      text += source[i];
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  p.nodes = Parser(Lexer(text).Run()).ParseTemplate();
  return p;
}

}  // namespace mobilellm::jinja
