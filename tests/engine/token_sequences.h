#pragma once
// Token lists for the engine tests (no model: tokens are just distinct integers).

#include <cstdint>
#include <numeric>
#include <vector>

namespace tern::engine::test_tokens {

/// Tokens first, first + 1, ..., first + n - 1.
inline std::vector<int32_t> seq(int32_t first, int64_t n) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  std::iota(out.begin(), out.end(), first);
  return out;
}

}  // namespace tern::engine::test_tokens
