#pragma once
// What the web console (`GET /console`) shows, kept as aggregates so that an open console costs the
// same under full load as when idle:
//   - the gateway adds each finished request once, on the thread that finishes it (counts, tokens and
//     spend by model, deployment, key and org: a map update under a mutex, never a scan);
//   - a sampler thread of its own, once a second, reads the engines' and the router's figures (the
//     same objects /metrics renders) and closes one point of the time series: throughput, TTFT and
//     inter-token p50 / p99 over the last second (from the engines' histograms, as Grafana's
//     histogram_quantile over /metrics would), requests running and waiting, KV use and prefix-cache
//     hit rates by tier;
//   - the console polls snapshot(), which copies the last few minutes of points and the tables.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace tern::observe {

/// A histogram's buckets (upper bounds; counts per bucket, not cumulative, the last one +Inf).
struct HistogramCounts {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
};

/// One local model's engine, as sampled.
struct EngineSample {
  std::string model;
  bool loaded = false;
  int64_t running = 0, waiting = 0;
  double kv_usage = 0;  ///< 0..1
  int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;  ///< totals; the hits include the two below
  int64_t disk_hit_tokens = 0, pinned_hit_tokens = 0;      ///< totals
  int64_t prompt_tokens = 0, generation_tokens = 0, finished_requests = 0;  ///< totals
  HistogramCounts ttft, itl;  ///< seconds
};

/// One deployment of the router, as sampled.
struct DeploymentSample {
  std::string name, kind, breaker;  ///< breaker: "closed", "open", "half_open"
  int64_t outstanding = 0, requests = 0, failures = 0;
  double ttft_ewma_s = 0;
};

struct GaugeSample {
  std::vector<EngineSample> engines;
  std::vector<DeploymentSample> deployments;
};

/// A finished request, as the gateway saw it.
struct FinishedRequest {
  std::string model, deployment, key_id, org;
  int status = 200;
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double cost_usd = 0;
};

/// The p-quantile (0..1) of the observations a histogram's counts describe, interpolated within the
/// bucket as Prometheus's histogram_quantile does; nullopt with no observations.
std::optional<double> histogram_quantile(double q, const HistogramCounts& h);

class LiveStats {
 public:
  /// `history` points are kept, one per `interval` once started.
  explicit LiveStats(std::chrono::milliseconds interval = std::chrono::seconds(1), size_t history = 600);
  ~LiveStats();  ///< stops the sampler

  /// Starts the sampler thread: `source` is called from it every interval until stop().
  void start(std::function<GaugeSample()> source);
  /// Joins the sampler (on_request and snapshot still work, on the figures so far).
  void stop();
  LiveStats(const LiveStats&) = delete;
  LiveStats& operator=(const LiveStats&) = delete;

  void on_request(const FinishedRequest& request);
  /// The console's data: the series (points newer than `since_unix_s`), the engines' and deployments'
  /// latest figures, traffic by model and deployment, spend by key and org, totals.
  nlohmann::json snapshot(double since_unix_s = 0) const;
  /// Samples `sample` now as if the sampler had (tests; the thread does it every interval).
  void add_sample(GaugeSample sample);

 private:
  struct Traffic {
    int64_t requests = 0, errors = 0, prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
    double cost_usd = 0;
  };
  void run();

  std::function<GaugeSample()> source_;
  const std::chrono::milliseconds interval_;
  const size_t history_;

  mutable std::mutex mutex_;
  // Fed by on_request.
  Traffic totals_;
  std::map<std::pair<std::string, std::string>, Traffic> by_model_;  // (model, deployment)
  std::map<std::string, Traffic> by_key_, by_org_;
  std::map<std::string, std::string> org_of_key_;
  // Sampled.
  std::deque<nlohmann::json> series_;
  std::optional<GaugeSample> last_sample_;
  Traffic totals_at_last_sample_;
  std::chrono::steady_clock::time_point last_sample_at_{};

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tern::observe
