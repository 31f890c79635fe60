#pragma once
// The engine's counters, gauges and histograms, rendered in Prometheus text format under vLLM's
// metric names with a `tern:` prefix (so dashboards written for vLLM work with a prefix change).
// The engine thread records; the HTTP side renders; one mutex between them.

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/kv/disk_tier.h"
#include "engine/kv/kv_manager.h"
#include "engine/sched/step_cost_model.h"

namespace tern::engine {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double value);
  /// Appends `name_bucket{le=..}`, `name_sum`, `name_count` lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;
  uint64_t count() const { return count_; }
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  ///< per bucket (not cumulative); the last is +Inf

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct EngineGauges {
  int64_t running = 0;
  int64_t waiting = 0;
  double kv_usage = 0;  ///< 0..1
  int64_t prefix_queries = 0;
  int64_t prefix_hits = 0;
  PinStats pins;
  int64_t ram_evictions = 0;           ///< cached blocks dropped from RAM
  int64_t disk_hit_tokens = 0;         ///< prompt tokens read back from the disk tier
  std::optional<DiskTierStats> disk;   ///< absent without --kv-disk-cache
};

/// The LoRA adapters of the engine's requests now, in the shape of vLLM's lora_requests_info (what
/// Kubernetes inference gateways read to route by adapter): comma-separated adapter names.
struct LoraGauges {
  std::string running, waiting;
  int64_t max_lora = 0;  ///< 0: the server serves no adapters (the LoRA metrics are left out)
};

/// What the web console samples each second: the gauges, token totals and the latency histograms.
struct EngineSnapshot {
  EngineGauges gauges;
  int64_t prompt_tokens = 0;      ///< computed, total
  int64_t generation_tokens = 0;  ///< sampled, total
  int64_t finished_requests = 0;
  Histogram ttft{{}}, itl{{}};
};

/// One engine step as the scheduler planned it and the engine measured it.
struct StepRecord {
  int64_t num_tokens = 0;
  int64_t num_prefill_tokens = 0;  ///< the prompt chunk(s) the scheduler chose
  int64_t num_preemptions = 0;
  double measured_seconds = 0;
  double predicted_seconds = 0;    ///< the step-time model's estimate before the step ran
  bool is_itl_limited = false;     ///< a prompt chunk was cut to keep under the ITL target
  StepCostCoefficients cost;       ///< the step-time model after this step
};

class EngineMetrics {
 public:
  explicit EngineMetrics(std::string model_name);

  // Recorded by the engine thread.
  void set_gauges(const EngineGauges& gauges);
  void on_step(const StepRecord& step);
  void on_prompt_tokens(int64_t n);
  void on_generation_token();
  void on_first_token(double ttft_seconds);
  void on_inter_token(double seconds);
  void on_finished(const std::string& finish_reason, double e2e_seconds, double queue_seconds, double prefill_seconds,
                   double decode_seconds, int64_t prompt_tokens, int64_t generation_tokens);

  /// A finished request's cache writes (prompt tokens it computed and pinned), by TTL in seconds.
  void on_cache_writes(const std::map<int64_t, int64_t>& tokens_by_ttl_s);

  void set_lora_gauges(LoraGauges gauges);
  /// A finished request of an adapter: its requests and tokens by adapter.
  void on_lora_finished(const std::string& adapter, int64_t prompt_tokens, int64_t generation_tokens);

  /// The scheduler's inter-token target, shown as gauges: a time, or a multiple of the decode-only step
  /// (0 for the form not in use; both 0: off).
  void set_itl_target(double seconds, double factor);

  /// One step's grammar masks (constrained requests): how many, the time filling them (off the
  /// critical path, overlapped with the forward pass) and the time the step waited for them and
  /// applied them (on it).
  void on_grammar_masks(int64_t num_masks, double fill_seconds, double critical_seconds);

  /// Speculative decoding: one request's step verified `num_draft` guesses and accepted `num_accepted`.
  void on_speculation(int64_t num_draft, int64_t num_accepted);
  /// A finished request that verified guesses: its share of them accepted.
  void on_speculative_request(int64_t num_draft, int64_t num_accepted);

  /// Prometheus text exposition format 0.0.4.
  std::string render() const;
  EngineGauges gauges() const;
  EngineSnapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::string labels_;  // model_name="..."
  EngineGauges gauges_;
  double itl_target_s_ = 0;
  double itl_target_factor_ = 0;
  int64_t prompt_tokens_ = 0;
  int64_t generation_tokens_ = 0;
  int64_t preemptions_ = 0;
  int64_t itl_limited_steps_ = 0;
  int64_t grammar_masks_ = 0;
  double grammar_fill_s_ = 0;
  double grammar_critical_s_ = 0;
  int64_t spec_drafts_ = 0, spec_draft_tokens_ = 0, spec_accepted_tokens_ = 0;
  StepRecord last_step_;
  std::map<std::string, int64_t> finished_;  // by finish reason
  std::map<int64_t, int64_t> cache_write_tokens_;  // by TTL in seconds (the few TTLs the API allows)
  LoraGauges lora_;
  struct LoraCounts {
    int64_t requests = 0, prompt_tokens = 0, generation_tokens = 0;
  };
  std::map<std::string, LoraCounts> lora_counts_;  // by adapter name (names the server loaded, a bounded set)
  Histogram ttft_, itl_, e2e_, queue_, prefill_, decode_, step_tokens_, request_prompt_tokens_, request_generation_tokens_;
  Histogram step_seconds_, step_prefill_tokens_, step_prediction_error_;
  Histogram spec_acceptance_rate_, spec_tokens_per_step_;
};

}  // namespace tern::engine
