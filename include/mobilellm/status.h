// Status and Result<T>: how every fallible call in the library reports failure.
//
// No exception leaves the library. A failure is one line of text that names the file (when
// there is one), what was expected and what was found; the CLI prints it and exits 1.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace mobilellm {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !message_.has_value(); }
  const std::string& message() const {
    static const std::string kOk = "ok";
    return message_ ? *message_ : kOk;
  }

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
};

// A value or the Status saying why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: must be an error

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& value() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

#define MOBILELLM_RETURN_IF_ERROR(expr)   \
  do {                                    \
    ::mobilellm::Status status_ = (expr); \
    if (!status_.ok()) return status_;    \
  } while (0)

}  // namespace mobilellm
