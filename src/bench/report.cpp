#include "bench/report.h"

#include <fstream>
#include <thread>

#include <fmt/format.h>

namespace tern::bench {

using nlohmann::json;

json summary_to_json(const Summary& summary) {
  return {{"count", summary.count}, {"mean", summary.mean}, {"stdev", summary.stdev}, {"min", summary.min},
          {"max", summary.max},     {"p50", summary.p50},   {"p90", summary.p90},     {"p95", summary.p95},
          {"p99", summary.p99},     {"p99.9", summary.p999}};
}

namespace {

json token_pair(int64_t server, int64_t client) {
  json out = {{"server", server}, {"client", client}, {"difference", server - client}};
  out["difference_pct"] = client > 0 ? 100.0 * (server - client) / client : 0.0;
  return out;
}

json cost_to_json(const CostMetrics& cost) {
  if (!cost.is_available) return nullptr;
  return {{"basis", cost.basis},
          {"list_usd", cost.list_usd},
          {"effective_usd", cost.effective_usd},
          {"list_per_request_usd", cost.list_per_request_usd},
          {"effective_per_request_usd", cost.effective_per_request_usd},
          {"effective_per_good_request_usd", cost.effective_per_good_request_usd},
          {"list_per_mtok_usd", cost.list_per_mtok_usd},
          {"effective_per_mtok_usd", cost.effective_per_mtok_usd},
          {"effective_per_moutput_tok_usd", cost.effective_per_moutput_tok_usd},
          {"saving_fraction", cost.saving_fraction},
          {"cached_fraction", cost.cached_fraction}};
}

json metrics_to_json(const Metrics& metrics, const SloSpec& slo) {
  json errors = json::object();
  for (const auto& [kind, count] : metrics.errors_by_kind) errors[kind] = count;
  json slo_json = json::object();
  if (slo.ttft_ms) slo_json["ttft_ms"] = *slo.ttft_ms;
  if (slo.tpot_ms) slo_json["tpot_ms"] = *slo.tpot_ms;
  if (slo.itl_ms) slo_json["itl_ms"] = *slo.itl_ms;
  if (slo.e2e_ms) slo_json["e2e_ms"] = *slo.e2e_ms;
  const TokenAccounting& tokens = metrics.tokens;
  return {
      {"stage", metrics.stage},
      {"stage_label", metrics.stage_label},
      {"load", metrics.load_value},
      {"target", metrics.target_name},
      {"requests", {{"total", metrics.num_requests}, {"ok", metrics.num_ok}, {"failed", metrics.num_failed}, {"good", metrics.num_good}}},
      {"errors", errors},
      {"error_examples", metrics.error_examples},
      {"duration_s", metrics.duration_s},
      {"throughput", {{"requests_per_s", metrics.request_throughput},
                      {"output_tokens_per_s", metrics.output_token_throughput},
                      {"total_tokens_per_s", metrics.total_token_throughput}}},
      {"goodput", {{"requests_per_s", metrics.goodput}, {"fraction", metrics.good_fraction}, {"slo", slo_json}}},
      {"latency_ms", {{"ttft", summary_to_json(metrics.latency.ttft_ms)},
                      {"tpot", summary_to_json(metrics.latency.tpot_ms)},
                      {"itl_per_chunk", summary_to_json(metrics.latency.itl_chunk_ms)},
                      {"itl_per_token", summary_to_json(metrics.latency.itl_token_ms)},
                      {"e2e", summary_to_json(metrics.latency.e2e_ms)},
                      {"queue_delay", summary_to_json(metrics.latency.queue_delay_ms)}}},
      {"tokens", {{"prompt", token_pair(tokens.server_prompt_tokens, tokens.client_prompt_tokens)},
                  {"output", token_pair(tokens.server_output_tokens, tokens.client_output_tokens)},
                  {"cached", tokens.cached_tokens},
                  {"cache_write", tokens.cache_write_tokens},
                  {"cache_write_1h", tokens.cache_write_1h_tokens},
                  {"requests_with_usage", tokens.num_with_usage},
                  {"input_per_request", summary_to_json(tokens.input_tokens_per_request)},
                  {"output_per_request", summary_to_json(tokens.output_tokens_per_request)}}},
      {"cost", cost_to_json(metrics.cost)},
  };
}

json record_to_json(const RequestRecord& record, const std::vector<TargetSpec>& targets) {
  auto ms_or_null = [](int64_t ns, int64_t from) -> json { return ns < 0 ? json(nullptr) : json((ns - from) / 1e6); };
  return {{"target", targets[record.target].name},
          {"stage", record.stage},
          {"session", record.session},
          {"turn", record.turn},
          {"model", record.model},
          {"prefix_group", record.prefix_group},
          {"max_tokens", record.max_tokens},
          {"scheduled_s", record.scheduled_ns / 1e9},
          {"queue_delay_ms", ms_or_null(record.dispatched_ns, record.scheduled_ns)},
          {"ttft_ms", ms_or_null(record.first_token_ns, record.scheduled_ns)},
          {"e2e_ms", ms_or_null(record.end_ns, record.scheduled_ns)},
          {"num_chunks", record.chunk_ns.size()},
          {"usage", {{"prompt_tokens", record.usage.prompt_tokens},
                     {"completion_tokens", record.usage.completion_tokens},
                     {"cached_tokens", record.usage.cached_tokens},
                     {"cache_write_tokens", record.usage.cache_write_tokens},
                     {"cache_write_1h_tokens", record.usage.cache_write_1h_tokens}}},
          {"client_prompt_tokens", record.client_prompt_tokens},
          {"client_output_tokens", record.client_output_tokens},
          {"error", record.is_ok() ? json(nullptr) : json(error_kind_name(record.error))},
          {"http_status", record.http_status},
          {"error_detail", record.error_detail}};
}

}  // namespace

std::string client_machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(cpuinfo, line)) {
    if (line.starts_with("model name")) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return fmt::format("{}, {} cores", model.empty() ? "unknown CPU" : model, std::thread::hardware_concurrency());
}

json report_json(const ReportInput& input, bool include_requests) {
  json targets = json::array();
  for (const TargetSpec& target : input.targets) {
    json entry = {{"name", target.name}, {"url", target.url}, {"model", target.model}, {"api", api_kind_name(target.api)}};
    entry["price"] = price_to_json(target.price);
    targets.push_back(std::move(entry));
  }
  json results = json::array();
  for (const Metrics& metrics : input.metrics) results.push_back(metrics_to_json(metrics, input.workload.slo));
  json out = {{"schema", "tern.bench.report"},
              {"schema_version", kReportSchemaVersion},
              {"tool", "tern bench 0.1.0"},
              {"started_at", input.started_at},
              {"tokenizer", input.tokenizer},
              {"workload", workload_to_json(input.workload)},
              {"targets", targets},
              {"results", results},
              {"interrupted", input.result.interrupted},
              {"machine", input.machine},
              {"workload_description", describe_workload(input.workload)}};
  if (const WarmupCounts warmup = warmup_counts(input.result, input.plan); warmup.num_requests > 0) {
    out["warmup"] = {{"requests", warmup.num_requests}, {"failed", warmup.num_failed}};
  }
  if (include_requests) {
    json requests = json::array();
    for (const RequestRecord& record : input.result.records) requests.push_back(record_to_json(record, input.targets));
    out["requests"] = std::move(requests);
  }
  return out;
}

std::string report_text(const ReportInput& input) {
  std::string out;
  auto pair = [](const Summary& summary) { return fmt::format("{:.1f} / {:.1f}", summary.p50, summary.p99); };
  size_t current_stage = static_cast<size_t>(-1);
  if (input.result.interrupted) {
    out += "\ninterrupted: stopped by a signal; the figures cover the requests sent before it (all of them finished)\n";
  }
  if (const WarmupCounts warmup = warmup_counts(input.result, input.plan); warmup.num_requests > 0) {
    out += fmt::format("\nwarm-up: {} requests sent ({} failed), excluded from every figure\n", warmup.num_requests, warmup.num_failed);
  }
  for (const Metrics& metrics : input.metrics) {
    if (metrics.stage != current_stage) {
      current_stage = metrics.stage;
      out += fmt::format("\nstage {}: {}\n", metrics.stage + 1, metrics.stage_label);
      out += fmt::format("  {:<16} {:>9} {:>8} {:>10} {:>15} {:>13} {:>13} {:>17} {:>9} {:>10}\n", "target", "ok/all",
                         "req/s", "out tok/s", "TTFT p50/p99", "TPOT p50/p99", "ITL p50/p99", "E2E p50/p99 ms",
                         "goodput", "queue p99");
    }
    out += fmt::format("  {:<16} {:>9} {:>8.2f} {:>10.1f} {:>15} {:>13} {:>13} {:>17} {:>8.0f}% {:>10.2f}\n",
                       metrics.target_name.substr(0, 16), fmt::format("{}/{}", metrics.num_ok, metrics.num_requests),
                       metrics.request_throughput, metrics.output_token_throughput, pair(metrics.latency.ttft_ms),
                       pair(metrics.latency.tpot_ms), pair(metrics.latency.itl_chunk_ms), pair(metrics.latency.e2e_ms),
                       100 * metrics.good_fraction, metrics.latency.queue_delay_ms.p99);
    if (!metrics.errors_by_kind.empty()) {
      std::string errors;
      for (const auto& [kind, count] : metrics.errors_by_kind) errors += fmt::format(" {}={}", kind, count);
      out += fmt::format("  {:<16} errors:{}\n", "", errors);
      for (const std::string& example : metrics.error_examples) out += fmt::format("  {:<16}   {}\n", "", example.substr(0, 160));
    }
  }
  out += "\ntokens (server usage vs client tokenizer: " + input.tokenizer + ")\n";
  for (const Metrics& metrics : input.metrics) {
    const TokenAccounting& tokens = metrics.tokens;
    const double prompt_diff = tokens.client_prompt_tokens > 0
                                   ? 100.0 * (tokens.server_prompt_tokens - tokens.client_prompt_tokens) / tokens.client_prompt_tokens : 0;
    const double output_diff = tokens.client_output_tokens > 0
                                   ? 100.0 * (tokens.server_output_tokens - tokens.client_output_tokens) / tokens.client_output_tokens : 0;
    if (tokens.num_with_usage == 0) {
      out += fmt::format("  stage {} {:<16} server reported no usage; client counts: prompt {}, output {}\n", metrics.stage + 1,
                         metrics.target_name.substr(0, 16), tokens.client_prompt_tokens, tokens.client_output_tokens);
      continue;
    }
    // Cache writes only where the server reported any (retention asked, or a provider that bills writes).
    const std::string written = tokens.cache_write_tokens > 0
                                    ? fmt::format(", written {} ({} kept 1h+)", tokens.cache_write_tokens, tokens.cache_write_1h_tokens)
                                    : "";
    out += fmt::format("  stage {} {:<16} prompt {} vs {} ({:+.1f}%), output {} vs {} ({:+.1f}%), cached {} ({:.1f}% of prompt){}, usage on {}/{}\n",
                       metrics.stage + 1, metrics.target_name.substr(0, 16), tokens.server_prompt_tokens,
                       tokens.client_prompt_tokens, prompt_diff, tokens.server_output_tokens, tokens.client_output_tokens,
                       output_diff, tokens.cached_tokens,
                       tokens.server_prompt_tokens > 0 ? 100.0 * tokens.cached_tokens / tokens.server_prompt_tokens : 0.0,
                       written, tokens.num_with_usage, metrics.num_ok);
  }
  bool has_cost = false;
  for (const Metrics& metrics : input.metrics) has_cost = has_cost || metrics.cost.is_available;
  if (has_cost) {
    out += "\ncost (USD)            list/1M tok  effective/1M tok  list/request  effective/request  per good request  saving\n";
    for (const Metrics& metrics : input.metrics) {
      const CostMetrics& cost = metrics.cost;
      if (!cost.is_available) continue;
      const std::string per_good = metrics.num_good > 0 ? fmt::format("{:.6f}", cost.effective_per_good_request_usd) : "-";
      out += fmt::format("  stage {} {:<12} {:>12.4f} {:>17.4f} {:>13.6f} {:>18.6f} {:>17} {:>6.1f}%{}\n", metrics.stage + 1,
                         metrics.target_name.substr(0, 12), cost.list_per_mtok_usd, cost.effective_per_mtok_usd,
                         cost.list_per_request_usd, cost.effective_per_request_usd, per_good,
                         100 * cost.saving_fraction, cost.basis == "hourly" ? "  (hourly price over measured throughput)" : "");
    }
  }
  return out;
}

}  // namespace tern::bench
