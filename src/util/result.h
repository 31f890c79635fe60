#pragma once
// Expected failures (a bad file, a bad request, a full cache) travel as values, never as exceptions:
// every fallible function returns `Result<T>`, whose error says what went wrong in words a user can act on.

#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace tern {

/// A failure a user can act on. `message` names the input and the problem ("model.gguf: tensor 'x'
/// ends at byte 912 past the end of the file (800 bytes)").
struct Error {
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

/// Builds the error side of a Result from a fmt format string.
template <class... Args>
[[nodiscard]] std::unexpected<Error> fail(fmt::format_string<Args...> format, Args&&... args) {
  return std::unexpected<Error>(Error{fmt::format(format, std::forward<Args>(args)...)});
}

/// Adds context to an error coming up from a lower layer ("loading tokenizer: " + message).
[[nodiscard]] inline std::unexpected<Error> with_context(std::string_view context, const Error& error) {
  return std::unexpected<Error>(Error{fmt::format("{}: {}", context, error.message)});
}

}  // namespace tern
