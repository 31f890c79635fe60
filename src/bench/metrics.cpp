#include "bench/metrics.h"

#include <algorithm>
#include <cmath>

namespace tern::bench {

namespace {

constexpr double kNsPerMs = 1e6;

/// Tokens each text chunk carried. Servers that stream one token per chunk make this exact (the usage count
/// equals the number of chunks); otherwise the usage count is spread over chunks by text length.
std::vector<int> tokens_per_chunk(const RequestRecord& record) {
  const size_t num_chunks = record.chunk_ns.size();
  const int64_t total = output_tokens_of(record);
  std::vector<int> tokens(num_chunks, 1);
  if (num_chunks == 0 || total <= 0 || total == static_cast<int64_t>(num_chunks)) return tokens;
  double total_bytes = 0;
  for (uint32_t bytes : record.chunk_text_bytes) total_bytes += bytes;
  for (size_t i = 0; i < num_chunks; ++i) {
    tokens[i] = std::max(1, static_cast<int>(std::lround(record.chunk_text_bytes[i] * total / total_bytes)));
  }
  return tokens;
}

}  // namespace

int64_t output_tokens_of(const RequestRecord& record) {
  if (record.usage.completion_tokens >= 0) return record.usage.completion_tokens;
  if (record.client_output_tokens >= 0) return record.client_output_tokens;
  return static_cast<int64_t>(record.chunk_ns.size());
}

double ttft_ms_of(const RequestRecord& record) { return (record.first_token_ns - record.scheduled_ns) / kNsPerMs; }
double e2e_ms_of(const RequestRecord& record) { return (record.end_ns - record.scheduled_ns) / kNsPerMs; }

double tpot_ms_of(const RequestRecord& record) {
  const int64_t output = output_tokens_of(record);
  if (output < 2 || record.first_token_ns < 0) return -1;
  return (record.end_ns - record.first_token_ns) / kNsPerMs / static_cast<double>(output - 1);
}

bool meets_slo(const RequestRecord& record, const SloSpec& slo) {
  if (!record.is_ok() || record.first_token_ns < 0) return false;
  if (slo.ttft_ms && ttft_ms_of(record) > *slo.ttft_ms) return false;
  if (slo.e2e_ms && e2e_ms_of(record) > *slo.e2e_ms) return false;
  if (slo.tpot_ms && tpot_ms_of(record) > *slo.tpot_ms) return false;
  if (slo.itl_ms) {
    for (size_t i = 1; i < record.chunk_ns.size(); ++i) {
      if ((record.chunk_ns[i] - record.chunk_ns[i - 1]) / kNsPerMs > *slo.itl_ms) return false;
    }
  }
  return true;
}

WarmupCounts warmup_counts(const RunResult& result, const Plan& plan) {
  WarmupCounts out;
  for (const RequestRecord& record : result.records) {
    if (record.stage >= plan.stages.size() || !plan.stages[record.stage]->spec().is_warmup) continue;
    ++out.num_requests;
    if (!record.is_ok()) ++out.num_failed;
  }
  return out;
}

std::vector<Metrics> compute_metrics(const RunResult& result, const Plan& plan, const std::vector<TargetSpec>& targets,
                                     const SloSpec& slo) {
  std::vector<Metrics> all;
  for (size_t stage = 0; stage < result.stages.size(); ++stage) {
    if (plan.stages[stage]->spec().is_warmup) continue;  // sent to warm the targets up; never measured
    for (size_t target = 0; target < targets.size(); ++target) {
      Metrics metrics;
      metrics.stage = stage;
      metrics.target = target;
      metrics.target_name = targets[target].name;
      metrics.stage_label = plan.stages[stage]->spec().arrival.label();
      metrics.load_value = plan.stages[stage]->spec().arrival.load_value();
      std::vector<double> ttft, tpot, itl_chunk, itl_token, e2e, queue, input_tokens, output_tokens;
      int64_t last_end_ns = result.stages[stage].start_ns;
      TokenTotals totals;
      for (const RequestRecord& record : result.records) {
        if (record.stage != stage || record.target != target) continue;
        ++metrics.num_requests;
        last_end_ns = std::max(last_end_ns, record.end_ns);
        if (record.dispatched_ns >= 0) queue.push_back((record.dispatched_ns - record.scheduled_ns) / kNsPerMs);
        if (!record.is_ok()) {
          ++metrics.num_failed;
          const std::string kind = record.error == ErrorKind::kHttpStatus ? fmt::format("http_{}", record.http_status)
                                                                          : std::string(error_kind_name(record.error));
          ++metrics.errors_by_kind[kind];
          if (metrics.error_examples.size() < 3) metrics.error_examples.push_back(kind + ": " + record.error_detail);
          continue;
        }
        ++metrics.num_ok;
        if (meets_slo(record, slo)) ++metrics.num_good;
        if (record.first_token_ns >= 0) ttft.push_back(ttft_ms_of(record));
        e2e.push_back(e2e_ms_of(record));
        if (const double value = tpot_ms_of(record); value >= 0) tpot.push_back(value);
        const std::vector<int> chunk_tokens = tokens_per_chunk(record);
        for (size_t i = 1; i < record.chunk_ns.size(); ++i) {
          const double gap_ms = (record.chunk_ns[i] - record.chunk_ns[i - 1]) / kNsPerMs;
          itl_chunk.push_back(gap_ms);
          for (int t = 0; t < chunk_tokens[i]; ++t) itl_token.push_back(gap_ms / chunk_tokens[i]);
        }
        TokenAccounting& tokens = metrics.tokens;
        const bool has_usage = record.usage.prompt_tokens >= 0;
        if (has_usage) ++tokens.num_with_usage;
        const int64_t prompt = has_usage ? record.usage.prompt_tokens : record.client_prompt_tokens;
        const int64_t output = output_tokens_of(record);
        tokens.server_prompt_tokens += std::max<int64_t>(0, record.usage.prompt_tokens);
        tokens.server_output_tokens += std::max<int64_t>(0, record.usage.completion_tokens);
        tokens.client_prompt_tokens += record.client_prompt_tokens;
        tokens.client_output_tokens += std::max<int64_t>(0, record.client_output_tokens);
        tokens.cached_tokens += std::max<int64_t>(0, record.usage.cached_tokens);
        tokens.cache_write_tokens += std::max<int64_t>(0, record.usage.cache_write_tokens);
        tokens.cache_write_1h_tokens += std::max<int64_t>(0, record.usage.cache_write_1h_tokens);
        input_tokens.push_back(static_cast<double>(prompt));
        output_tokens.push_back(static_cast<double>(output));
        totals.tokens.prompt_tokens += prompt;
        totals.tokens.completion_tokens += output;
        totals.tokens.cached_tokens += std::max<int64_t>(0, record.usage.cached_tokens);
        totals.tokens.cache_write_tokens += std::max<int64_t>(0, record.usage.cache_write_tokens);
        totals.tokens.cache_write_1h_tokens += std::max<int64_t>(0, record.usage.cache_write_1h_tokens);
      }
      metrics.duration_s = (last_end_ns - result.stages[stage].start_ns) / 1e9;
      metrics.latency = {summarize(ttft), summarize(tpot), summarize(itl_chunk), summarize(itl_token), summarize(e2e),
                         summarize(queue)};
      metrics.tokens.input_tokens_per_request = summarize(input_tokens);
      metrics.tokens.output_tokens_per_request = summarize(output_tokens);
      if (metrics.duration_s > 0) {
        metrics.request_throughput = metrics.num_ok / metrics.duration_s;
        metrics.output_token_throughput = totals.tokens.completion_tokens / metrics.duration_s;
        metrics.total_token_throughput = (totals.tokens.prompt_tokens + totals.tokens.completion_tokens) / metrics.duration_s;
        metrics.goodput = metrics.num_good / metrics.duration_s;
      }
      if (metrics.num_requests > 0) metrics.good_fraction = static_cast<double>(metrics.num_good) / metrics.num_requests;
      totals.num_requests = metrics.num_ok;
      totals.num_good_requests = metrics.num_good;
      totals.duration_s = metrics.duration_s;
      metrics.cost = compute_cost(targets[target].price, totals);
      all.push_back(std::move(metrics));
    }
  }
  return all;
}

}  // namespace tern::bench
