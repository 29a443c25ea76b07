// JsonField: the one way the converter reads a field of a JSON file it was given (config.json,
// *.index.json, safetensors headers). A wrong type is one error line naming the key and the
// file, never an exception.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>

#include "mobilellm/status.h"

namespace mobilellm::convert {

// The one way the converter reads a JSON field: `key` of object `j` (from `file`) as T (bool,
// int64_t, double or std::string). Absent or null gives `fallback`, or an error if there is none;
// a value of another type is one error naming the key and the file. Never throws.
template <class T>
Result<T> JsonField(const nlohmann::json& j, const std::string& key, const std::string& file,
                    std::optional<T> fallback = std::nullopt) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Status::Error(file + ": missing \"" + key + "\"");
  }
  const nlohmann::json& v = *it;
  auto wrong = [&](const char* expected) {
    return Status::Error(file + ": \"" + key + "\" must be " + expected + ", found " +
                         v.type_name());
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return wrong("true or false");
    return v.get<bool>();
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
      return wrong("an integer");
    return v.get<int64_t>();
  } else if constexpr (std::is_same_v<T, double>) {
    if (!v.is_number()) return wrong("a number");
    return v.get<double>();
  } else {
    static_assert(std::is_same_v<T, std::string>);
    if (!v.is_string()) return wrong("a string");
    return v.get<std::string>();
  }
}

}  // namespace mobilellm::convert
