#pragma once
// The price of a call's tokens, one formula for everything that prices tokens (the gateway's
// usage.cost, tern bench's effective cost; the ledger later): prompt tokens read from a prompt cache
// and tokens written to one are priced apart from the rest of the prompt.
//
//   cost = (prompt - cached - written) * input + cached * cached_input
//        + (written - written_1h) * cache_write + written_1h * cache_write_1h
//        + output * output_price,   all prices in USD per 1M tokens
//
// Writes are priced by retention as Anthropic prices them: a short (5-minute) write at cache_write, a
// write retained an hour or more (Anthropic's 1h, OpenAI's 24h) at cache_write_1h.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "wire/types.h"

namespace tern::metering {

/// Costs are kept to 1e-10 USD, finer than any price can give (USD per 1M tokens, to 4 decimal places:
/// 1e-10 per token): 0.0471 instead of the binary noise 0.047099999999999996 in JSON, the ledger and
/// `tern usage`. Sums of rounded costs are rounded again where they are shown.
inline double round_usd(double usd) { return std::round(usd * 1e10) / 1e10; }

struct TokenPrices {
  double input = 0;
  double cached_input = 0;
  double cache_write = 0;
  double cache_write_1h = 0;
  double output = 0;
};

/// USD for the counts of `n` (one call's, or a sum of calls': the formula is linear). Counts from an
/// upstream are not trusted to add up: cached and written tokens are clamped to the prompt, so the
/// cost is never negative.
inline double token_cost_usd(const TokenPrices& p, const wire::Usage& n) {
  const int64_t prompt = std::max<int64_t>(n.prompt_tokens, 0);
  const int64_t cached = std::clamp<int64_t>(n.cached_tokens, 0, prompt);
  const int64_t written = std::clamp<int64_t>(n.cache_write_tokens, 0, prompt - cached);
  const int64_t written_1h = std::clamp<int64_t>(n.cache_write_1h_tokens, 0, written);
  const int64_t uncached = prompt - cached - written;
  return round_usd((static_cast<double>(uncached) * p.input + static_cast<double>(cached) * p.cached_input +
                    static_cast<double>(written - written_1h) * p.cache_write + static_cast<double>(written_1h) * p.cache_write_1h +
                    static_cast<double>(std::max<int64_t>(n.completion_tokens, 0)) * p.output) /
                   1e6);
}

}  // namespace tern::metering
