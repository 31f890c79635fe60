#pragma once
// From what each request saw (RequestRecord) to the figures a report shows, per (stage, target). Every
// metric is defined in docs/bench.md, "Metrics"; the definitions in short:
//
//   TTFT        first text chunk arrival - scheduled send time
//   E2E         response end - scheduled send time
//   TPOT        (E2E - TTFT) / (output tokens - 1), per request with >= 2 output tokens
//   ITL/chunk   gap between consecutive text chunks
//   ITL/token   each gap divided over the tokens its chunk carried (gap / n, n times)
//   queue delay dispatch time - scheduled send time (client-side: timer lateness, pool full)
//   goodput     successful requests meeting every SLO, per second

#include <map>
#include <string>
#include <vector>

#include "bench/cost.h"
#include "bench/runner.h"
#include "bench/stats.h"
#include "bench/workload.h"

namespace tern::bench {

struct LatencyMetrics {
  Summary ttft_ms, tpot_ms, itl_chunk_ms, itl_token_ms, e2e_ms, queue_delay_ms;
};

struct TokenAccounting {
  int64_t server_prompt_tokens = 0, client_prompt_tokens = 0;
  int64_t server_output_tokens = 0, client_output_tokens = 0;
  int64_t cached_tokens = 0, cache_write_tokens = 0, cache_write_1h_tokens = 0;
  size_t num_with_usage = 0;  ///< successful requests whose stream carried usage
  Summary input_tokens_per_request, output_tokens_per_request;  ///< server figures (client where missing)
};

struct Metrics {
  size_t stage = 0, target = 0;
  std::string target_name, stage_label;
  double load_value = 0;  ///< concurrency or rate: the x-axis of sweep plots
  size_t num_requests = 0, num_ok = 0, num_failed = 0, num_good = 0;
  std::map<std::string, size_t> errors_by_kind;  ///< "timeout", "http_500", ...
  std::vector<std::string> error_examples;       ///< first few error details
  double duration_s = 0;                         ///< stage start to this target's last response
  double request_throughput = 0;                 ///< successful requests / s
  double output_token_throughput = 0;            ///< output tokens / s
  double total_token_throughput = 0;             ///< (prompt + output) tokens / s
  double goodput = 0;                            ///< good requests / s
  double good_fraction = 0;                      ///< good / all requests
  LatencyMetrics latency;
  TokenAccounting tokens;
  CostMetrics cost;
};

/// One Metrics per measured (stage, target), stage-major: warm-up stages have none. Successful requests
/// only count toward latencies.
std::vector<Metrics> compute_metrics(const RunResult& result, const Plan& plan, const std::vector<TargetSpec>& targets,
                                     const SloSpec& slo);

/// Requests of the warm-up stages (all targets): sent, and of those failed.
struct WarmupCounts {
  size_t num_requests = 0, num_failed = 0;
};
WarmupCounts warmup_counts(const RunResult& result, const Plan& plan);

/// Output tokens of a request: the server's usage, else the client's count.
int64_t output_tokens_of(const RequestRecord& record);
/// Whether a successful request met every objective set in `slo`.
bool meets_slo(const RequestRecord& record, const SloSpec& slo);
/// TTFT / E2E / TPOT of one request in ms (TPOT -1 when under 2 output tokens).
double ttft_ms_of(const RequestRecord& record);
double e2e_ms_of(const RequestRecord& record);
double tpot_ms_of(const RequestRecord& record);

}  // namespace tern::bench
