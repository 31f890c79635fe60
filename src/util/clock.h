#pragma once
// Wall-clock time as the ledger, keys and budgets store it, and its UTC text.

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace tern {

/// Now, in Unix milliseconds (UTC).
inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Now, in Unix seconds with fractions.
inline double unix_seconds() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

/// A time in Unix milliseconds as UTC text with strftime's `format` ("%Y-%m-%d").
inline std::string utc_text(int64_t time_ms, const char* format) {
  const std::time_t seconds = static_cast<std::time_t>(time_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[64];
  const size_t length = std::strftime(text, sizeof text, format, &tm);
  return std::string(text, length);
}

}  // namespace tern
