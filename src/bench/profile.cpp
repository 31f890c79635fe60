#include "bench/profile.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "bench/jsonl.h"
#include "bench/replay.h"
#include "bench/report.h"
#include "bench/stats.h"

namespace tern::bench {

using nlohmann::json;

namespace {

/// Lognormal fit by the moments of the logs: median = exp(mean log x), sigma = stdev of log x.
json lognormal_fit(const std::vector<double>& values) {
  std::vector<double> logs;
  for (double value : values) logs.push_back(std::log(std::max(1.0, value)));
  const Summary log_summary = summarize(logs);
  const Summary summary = summarize(values);
  return {{"dist", "lognormal"}, {"median", std::exp(log_summary.mean)}, {"sigma", log_summary.stdev},
          {"min", std::max(1.0, summary.min)}, {"max", std::max(1.0, summary.max)}};
}

/// Zipf exponent s from ranked frequencies: least squares of log(count) on log(rank), s = -slope.
double zipf_exponent(std::vector<double> counts) {
  std::sort(counts.rbegin(), counts.rend());
  if (counts.size() < 2) return 0;
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = static_cast<double>(counts.size());
  for (size_t rank = 0; rank < counts.size(); ++rank) {
    const double x = std::log(rank + 1.0), y = std::log(counts[rank]);
    sx += x; sy += y; sxx += x * x; sxy += x * y;
  }
  const double denominator = n * sxx - sx * sx;
  return denominator > 0 ? std::max(0.0, -(n * sxy - sx * sy) / denominator) : 0;
}

}  // namespace

Result<json> profile_log(const std::string& log_path, const ProfileOptions& options) {
  auto entries_or = read_request_log(log_path);
  if (!entries_or) return std::unexpected(entries_or.error());
  const std::vector<LoggedRequest>& entries = *entries_or;
  const double start = entries.front().timestamp, span_s = std::max(1e-3, entries.back().timestamp - start);
  std::vector<double> prompt, output, gaps;
  int64_t total_prompt = 0, total_cached = 0;
  bool has_cached = false;
  std::map<std::string, size_t> model_counts, prefix_counts, session_counts;
  for (size_t i = 0; i < entries.size(); ++i) {
    const LoggedRequest& entry = entries[i];
    prompt.push_back(static_cast<double>(entry.prompt_tokens));
    output.push_back(static_cast<double>(entry.completion_tokens));
    if (i > 0) gaps.push_back(entry.timestamp - entries[i - 1].timestamp);
    total_prompt += entry.prompt_tokens;
    if (entry.cached_tokens >= 0) {
      has_cached = true;
      total_cached += entry.cached_tokens;
    }
    if (!entry.model.empty()) ++model_counts[entry.model];
    if (!entry.prefix_hash.empty()) ++prefix_counts[entry.prefix_hash];
    if (!entry.session_id.empty()) ++session_counts[entry.session_id];
  }

  // QPS over time, in buckets.
  const double bucket_s = options.bucket_s > 0 ? options.bucket_s : std::max(1.0, span_s / 24);
  const size_t num_buckets = static_cast<size_t>(std::floor(span_s / bucket_s)) + 1;
  std::vector<double> bucket_counts(num_buckets, 0);
  for (const LoggedRequest& entry : entries) bucket_counts[std::min(num_buckets - 1, static_cast<size_t>((entry.timestamp - start) / bucket_s))] += 1;
  const double mean_rate = (entries.size() - 1) / span_s;
  // Burstiness: inter-arrival coefficient of variation CV gives the gamma shape 1 / CV^2 (Poisson: CV = 1).
  const Summary gap_summary = summarize(gaps);
  const double cv = gap_summary.mean > 0 ? gap_summary.stdev / gap_summary.mean : 1;
  const double burstiness = cv > 0 ? 1 / (cv * cv) : 1;
  const bool is_poisson_like = std::abs(cv - 1) < 0.15;

  json workload = json::object();
  workload["seed"] = 42;
  if (options.is_empirical) {
    const std::string absolute = std::filesystem::absolute(log_path).string();
    workload["input_tokens"] = {{"dist", "dataset"}, {"path", absolute}, {"field", "prompt_tokens"}};
    workload["output_tokens"] = {{"dist", "dataset"}, {"path", absolute}, {"field", "completion_tokens"}};
  } else {
    workload["input_tokens"] = lognormal_fit(prompt);
    workload["output_tokens"] = lognormal_fit(output);
  }
  auto arrival_at = [&](double rate) {
    json arrival = is_poisson_like ? json{{"type", "poisson"}, {"rate", rate}}
                                   : json{{"type", "gamma"}, {"rate", rate}, {"burstiness", burstiness}};
    return arrival;
  };
  json stages = json::array();
  if (options.is_flat || num_buckets == 1) {
    stages.push_back({{"arrival", arrival_at(mean_rate)}, {"duration_s", span_s}});
  } else {
    for (double count : bucket_counts) {
      // An empty bucket becomes a very low rate rather than a gap: stages cannot idle yet.
      stages.push_back({{"arrival", arrival_at(std::max(count / bucket_s, 1e-3))}, {"duration_s", bucket_s}});
    }
  }
  workload["stages"] = stages;

  size_t num_prefixed = 0, num_reusing = 0;
  std::vector<double> prefix_frequencies;
  for (const auto& [hash, count] : prefix_counts) {
    num_prefixed += count;
    num_reusing += count - 1;
    prefix_frequencies.push_back(static_cast<double>(count));
  }
  if (!prefix_counts.empty()) {
    // Prefix length: the typical cached amount on a reuse, when the log says; else a quarter of the prompt.
    std::vector<double> cached_on_hit;
    for (const LoggedRequest& entry : entries) {
      if (!entry.prefix_hash.empty() && entry.cached_tokens > 0) cached_on_hit.push_back(static_cast<double>(entry.cached_tokens));
    }
    const double length = !cached_on_hit.empty() ? summarize(cached_on_hit).p50 : summarize(prompt).p50 / 4;
    workload["prefix"] = {{"groups", std::min<size_t>(prefix_counts.size(), 10000)},
                          {"length_tokens", std::max(1L, std::lround(length))},
                          {"zipf_s", zipf_exponent(prefix_frequencies)},
                          {"fraction", static_cast<double>(num_prefixed) / entries.size()}};
  }
  if (!session_counts.empty()) {
    const double turns = static_cast<double>(entries.size()) / session_counts.size();
    if (turns >= 1.5) workload["sessions"] = {{"turns", std::lround(turns)}, {"think_time_ms", 0}};
  }
  if (!model_counts.empty()) {
    json models = json::array();
    for (const auto& [model, count] : model_counts) models.push_back({{"model", model}, {"weight", static_cast<double>(count) / entries.size()}});
    workload["models"] = models;
  }

  json qps = json::array();
  for (size_t i = 0; i < num_buckets; ++i) qps.push_back({{"start_s", i * bucket_s}, {"qps", bucket_counts[i] / bucket_s}});
  workload["profile"] = {
      {"source", log_path},
      {"requests", entries.size()},
      {"span_s", span_s},
      {"mean_qps", mean_rate},
      {"interarrival_cv", cv},
      {"prompt_tokens", summary_to_json(summarize(prompt))},
      {"completion_tokens", summary_to_json(summarize(output))},
      {"qps_over_time", qps},
      {"bucket_s", bucket_s},
      {"cached_token_ratio", has_cached && total_prompt > 0 ? json(static_cast<double>(total_cached) / total_prompt) : json(nullptr)},
      {"prefix_reuse_ratio", num_prefixed > 0 ? json(static_cast<double>(num_reusing) / num_prefixed) : json(nullptr)},
      {"distinct_prefixes", prefix_counts.size()},
      {"sessions", session_counts.size()},
  };
  return workload;
}

}  // namespace tern::bench
