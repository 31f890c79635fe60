#pragma once
// Wall-clock time as the ledger, keys and budgets store it.

#include <chrono>
#include <cstdint>

namespace tern {

/// Now, in Unix milliseconds (UTC).
inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace tern
