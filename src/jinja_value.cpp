// Chat-template values as Python sees them: truthiness, str(), repr(), json.dumps as
// transformers' `tojson` calls it, == and <, and str's UTF-8 / whitespace / case rules.
#include <cstdio>

#include "jinja.h"

namespace mobilellm::jinja {

void Fail(int line, std::string message) {
  throw Error{line, std::move(message)};
}

Value Value::MakeList(List items) {
  Value v = Make(kList);
  int depth = 1;
  for (const Value& x : items) depth = std::max(depth, x.depth + 1);
  if (depth > kMaxDepth) Fail(0, "lists nested deeper than " + std::to_string(kMaxDepth));
  v.depth = uint8_t(depth);
  v.list = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::MakeDict(Dict items) {
  Value v = Make(kDict);
  int depth = 1;
  for (const auto& kv : items) depth = std::max(depth, kv.second.depth + 1);
  if (depth > kMaxDepth) Fail(0, "dicts nested deeper than " + std::to_string(kMaxDepth));
  v.depth = uint8_t(depth);
  v.dict = std::make_shared<const Dict>(std::move(items));
  return v;
}

const Value* Value::Find(std::string_view key) const {
  const Dict* d = kind == kDict ? dict.get() : kind == kNamespace ? ns.get() : nullptr;
  if (d == nullptr) return nullptr;
  for (const auto& kv : *d) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::kUndefined:
    case Value::kNone:
      return false;
    case Value::kBool:
    case Value::kInt:
      return v.i != 0;
    case Value::kString:
      return !v.s.empty();
    case Value::kList:
      return !v.list->empty();
    case Value::kDict:
      return !v.dict->empty();
    case Value::kNamespace:
      return true;
  }
  return false;
}

const char* TypeName(const Value& v) {
  switch (v.kind) {
    case Value::kUndefined:
      return "Undefined";
    case Value::kNone:
      return "NoneType";
    case Value::kBool:
      return "bool";
    case Value::kInt:
      return "int";
    case Value::kString:
      return "str";
    case Value::kList:
      return "list";
    case Value::kDict:
      return "dict";
    case Value::kNamespace:
      return "Namespace";
  }
  return "?";
}

namespace {

// str.isprintable(), approximately: the control, format, separator and private-use code points
// of the scripts chat text uses.
bool IsPrintable(char32_t c) {
  if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0xA0) || c == 0xAD) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF || (c >= 0xD800 && c <= 0xF8FF) ||
      (c >= 0xFFF9 && c <= 0xFFFB)) {
    return false;
  }
  return c <= 0x10FFFF;
}

void ReprString(std::string_view s, std::string* out) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  out->push_back(quote);
  for (char32_t c : Decode(s)) {
    char buf[16];
    if (c == char32_t(quote) || c == '\\') {
      out->push_back('\\');
      out->push_back(char(c));
    } else if (c == '\n') {
      *out += "\\n";
    } else if (c == '\r') {
      *out += "\\r";
    } else if (c == '\t') {
      *out += "\\t";
    } else if (IsPrintable(c)) {
      *out += Encode(std::u32string_view(&c, 1));
    } else {
      if (c < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", unsigned(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", unsigned(c));
      }
      *out += buf;
    }
  }
  out->push_back(quote);
}

void ReprTo(const Value& v, std::string* out) {
  switch (v.kind) {
    case Value::kString:
      ReprString(v.s, out);
      return;
    case Value::kUndefined:
      *out += "Undefined";
      return;
    case Value::kList:
      out->push_back(v.tuple ? '(' : '[');
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) *out += ", ";
        ReprTo((*v.list)[k], out);
      }
      if (v.tuple && v.list->size() == 1) out->push_back(',');
      out->push_back(v.tuple ? ')' : ']');
      return;
    case Value::kDict:
    case Value::kNamespace: {
      const Dict& d = v.kind == Value::kDict ? *v.dict : *v.ns;
      if (v.kind == Value::kNamespace) *out += "<Namespace ";
      out->push_back('{');
      for (size_t k = 0; k < d.size(); ++k) {
        if (k) *out += ", ";
        ReprString(d[k].first, out);
        *out += ": ";
        ReprTo(d[k].second, out);
      }
      out->push_back('}');
      if (v.kind == Value::kNamespace) out->push_back('>');
      return;
    }
    default:
      *out += Str(v);
  }
}

void JsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    const unsigned char c = ch;
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(c));
          *out += buf;
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

void JsonTo(const Value& v, int indent, int level, int line, std::string* out) {
  auto newline = [&](int lvl) {
    out->push_back('\n');
    out->append(size_t(indent) * size_t(lvl), ' ');
  };
  switch (v.kind) {
    case Value::kNone:
      *out += "null";
      return;
    case Value::kBool:
      *out += v.i ? "true" : "false";
      return;
    case Value::kInt:
      *out += std::to_string(v.i);
      return;
    case Value::kString:
      JsonString(v.s, out);
      return;
    case Value::kList:
    case Value::kDict: {
      const bool is_list = v.kind == Value::kList;
      const size_t n = is_list ? v.list->size() : v.dict->size();
      out->push_back(is_list ? '[' : '{');
      for (size_t k = 0; k < n; ++k) {
        if (k) out->push_back(',');
        if (indent >= 0) {
          newline(level + 1);
        } else if (k) {
          out->push_back(' ');
        }
        if (!is_list) {
          JsonString((*v.dict)[k].first, out);
          *out += ": ";
        }
        JsonTo(is_list ? (*v.list)[k] : (*v.dict)[k].second, indent, level + 1, line, out);
      }
      if (indent >= 0 && n > 0) newline(level);
      out->push_back(is_list ? ']' : '}');
      return;
    }
    default:
      Fail(line, std::string("Object of type ") + TypeName(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string Str(const Value& v) {
  switch (v.kind) {
    case Value::kUndefined:
      return "";
    case Value::kNone:
      return "None";
    case Value::kBool:
      return v.i ? "True" : "False";
    case Value::kInt:
      return std::to_string(v.i);
    case Value::kString:
      return v.s;
    default: {
      std::string out;
      ReprTo(v, &out);
      return out;
    }
  }
}

std::string Repr(const Value& v) {
  std::string out;
  ReprTo(v, &out);
  return out;
}

std::string ToJson(const Value& v, int indent, int line) {
  std::string out;
  JsonTo(v, indent, 0, line, &out);
  return out;
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.i == b.i;
  if (a.kind != b.kind || a.tuple != b.tuple) return false;
  switch (a.kind) {
    case Value::kUndefined:
    case Value::kNone:
      return true;
    case Value::kString:
      return a.s == b.s;
    case Value::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k) {
        if (!Equal((*a.list)[k], (*b.list)[k])) return false;
      }
      return true;
    case Value::kDict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& kv : *a.dict) {
        const Value* other = b.Find(kv.first);
        if (other == nullptr || !Equal(kv.second, *other)) return false;
      }
      return true;
    case Value::kNamespace:
      return a.ns == b.ns;
    default:
      return false;
  }
}

int Compare(const Value& a, const Value& b, int line) {
  if (a.is_number() && b.is_number()) return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
  if (a.kind == Value::kString && b.kind == Value::kString) {
    const int c = a.s.compare(b.s);  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.kind == Value::kList && b.kind == Value::kList) {
    const size_t n = std::min(a.list->size(), b.list->size());
    for (size_t k = 0; k < n; ++k) {
      if (!Equal((*a.list)[k], (*b.list)[k])) return Compare((*a.list)[k], (*b.list)[k], line);
    }
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  if (a.kind == Value::kUndefined || b.kind == Value::kUndefined) {
    Fail(line, "'" + (a.kind == Value::kUndefined ? a.s : b.s) + "' is undefined");
  }
  Fail(line, std::string("ordering not supported between '") + TypeName(a) + "' and '" +
                 TypeName(b) + "'");
}

// ---- UTF-8 and str's character classes ------------------------------------------------------

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::u32string Decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    int n = 0;
    char32_t cp = 0, min = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07, min = 0x10000;
    }
    bool ok = n > 0 && i + n < s.size();
    for (int k = 1; ok && k <= n; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) {
        ok = false;
      } else {
        cp = (cp << 6) | (cc & 0x3F);
      }
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))) ok = false;
    if (ok) {
      out.push_back(cp);
      i += n + 1;
    } else {
      out.push_back(0xDC00 + c);  // surrogateescape
      ++i;
    }
  }
  return out;
}

std::string Encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out.push_back(char(c));
    } else if (c >= 0xDC80 && c <= 0xDCFF) {
      out.push_back(char(c - 0xDC00));  // an undecodable byte, back as it was
    } else if (c < 0x800) {
      out.push_back(char(0xC0 | (c >> 6)));
      out.push_back(char(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(char(0xE0 | (c >> 12)));
      out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(char(0x80 | (c & 0x3F)));
    } else {
      out.push_back(char(0xF0 | (c >> 18)));
      out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(char(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

bool IsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Simple case pairs of ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
char32_t Upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0xB5) return c;
  if (c == 0xB5) return 0x39C;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c == 0x131) return 'I';
  if (c == 0x17F) return 'S';
  if (((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) &&
      (c & 1)) {
    return c - 1;
  }
  if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && !(c & 1)) return c - 1;
  if (c == 0x3C2) return 0x3A3;
  if (c >= 0x3B1 && c <= 0x3CB) return c - 32;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

char32_t Lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) &&
      !(c & 1)) {
    return c + 1;
  }
  if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c & 1)) return c + 1;
  if ((c >= 0x391 && c <= 0x3AB && c != 0x3A2)) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool IsCased(char32_t c) {
  return Upper(c) != c || Lower(c) != c || c == 0xDF || c == 0x138 || c == 0x149 || c == 0x390 ||
         c == 0x3B0;
}

}  // namespace mobilellm::jinja
