#pragma once
// Effective cost: what a workload actually costs on a target once prompt caching is netted out, beside
// the list-price cost that assumes every prompt token is billed at the full input rate. The gap between
// the two is the headline-vs-effective difference a buyer needs (docs/bench.md, "Cost").
//
//   list      = prompt * in + output * out
//   effective = (prompt - cached - written) * in + cached * cached_in + written * write + output * out
//   hourly    = hourly_usd * measured duration, spread over the requests and tokens served in it

#include <cstdint>
#include <string>

#include "bench/workload.h"
#include "wire/types.h"

namespace tern::bench {

struct TokenTotals {
  wire::Usage tokens;            ///< summed over the successful requests
  size_t num_requests = 0;       ///< successful requests
  size_t num_good_requests = 0;  ///< of those, meeting the SLOs
  double duration_s = 0;
};

struct CostMetrics {
  bool is_available = false;
  std::string basis;                ///< "tokens" or "hourly"
  double list_usd = 0;              ///< tokens basis: no caching discount; hourly: equals effective
  double effective_usd = 0;
  double list_per_request_usd = 0;
  double effective_per_request_usd = 0;
  double effective_per_good_request_usd = 0;  ///< 0 when no request met the SLOs
  double list_per_mtok_usd = 0;       ///< per 1M tokens (prompt + output)
  double effective_per_mtok_usd = 0;
  double effective_per_moutput_tok_usd = 0;  ///< per 1M output tokens
  double saving_fraction = 0;         ///< (list - effective) / list
  double cached_fraction = 0;         ///< cached / prompt tokens
};

CostMetrics compute_cost(const PriceTable& price, const TokenTotals& totals);

}  // namespace tern::bench
