#include "bench/cost.h"

#include "metering/token_cost.h"

namespace tern::bench {

CostMetrics compute_cost(const PriceTable& price, const TokenTotals& totals) {
  CostMetrics cost;
  if (!price.is_set() || totals.num_requests == 0) return cost;
  cost.is_available = true;
  const wire::Usage& t = totals.tokens;
  const double total_tokens = static_cast<double>(t.prompt_tokens + t.completion_tokens);
  cost.cached_fraction = t.prompt_tokens > 0 ? static_cast<double>(t.cached_tokens) / t.prompt_tokens : 0;
  if (price.hourly_usd) {
    // Self-hosted: the instance costs the same whether a token was cached or not; caching shows up as more
    // throughput, hence a lower cost per token.
    cost.basis = "hourly";
    cost.effective_usd = cost.list_usd = *price.hourly_usd * totals.duration_s / 3600.0;
  } else {
    cost.basis = "tokens";
    const double input = price.input_per_mtok.value_or(0);
    const double output = price.output_per_mtok.value_or(0);
    const double cache_write = price.cache_write_per_mtok.value_or(input);
    const metering::TokenPrices prices{.input = input, .cached_input = price.cached_input_per_mtok.value_or(input),
                                       .cache_write = cache_write,
                                       .cache_write_1h = price.cache_write_1h_per_mtok.value_or(cache_write), .output = output};
    cost.list_usd = (t.prompt_tokens * input + t.completion_tokens * output) / 1e6;
    cost.effective_usd = metering::token_cost_usd(prices, t);
  }
  const double requests = static_cast<double>(totals.num_requests);
  cost.list_per_request_usd = cost.list_usd / requests;
  cost.effective_per_request_usd = cost.effective_usd / requests;
  if (totals.num_good_requests > 0) cost.effective_per_good_request_usd = cost.effective_usd / totals.num_good_requests;
  if (total_tokens > 0) {
    cost.list_per_mtok_usd = cost.list_usd / total_tokens * 1e6;
    cost.effective_per_mtok_usd = cost.effective_usd / total_tokens * 1e6;
  }
  if (t.completion_tokens > 0) cost.effective_per_moutput_tok_usd = cost.effective_usd / t.completion_tokens * 1e6;
  if (cost.list_usd > 0) cost.saving_fraction = (cost.list_usd - cost.effective_usd) / cost.list_usd;
  return cost;
}

}  // namespace tern::bench
