#pragma once
// The workload spec: what traffic `tern bench` generates (docs/bench.md, "Workload file", is the user's
// description of every field). A spec is JSON; flags fill the common cases. Parsing validates everything
// up front so a run never stops half-way on a typo.

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/api.h"
#include "bench/dataset.h"
#include "bench/replay.h"
#include "util/result.h"

namespace tern::bench {

/// A token-length distribution. Samples are rounded and clamped to [min, max] (min at least 1).
struct LengthDistribution {
  enum class Kind { kFixed, kUniform, kNormal, kLognormal, kDataset };
  Kind kind = Kind::kFixed;
  double value = 128;                  ///< fixed
  double mean = 0, stdev = 0;          ///< normal
  double median = 0, sigma = 0;        ///< lognormal: median = exp(mu), sigma of log
  double min = 1, max = 1e9;           ///< uniform bounds, and the clamp of every kind
  std::string dataset_path, dataset_field;
  std::vector<int> dataset_values;     ///< loaded from dataset_path; sampled uniformly with replacement

  int sample(std::mt19937_64& rng) const;
  static LengthDistribution fixed(int tokens);
};

/// How requests arrive within one stage.
struct ArrivalSpec {
  enum class Kind { kConcurrency, kPoisson, kGamma, kConstant, kRamp, kReplay };
  Kind kind = Kind::kConcurrency;
  int concurrency = 1;         ///< closed loop: this many requests always in flight per target
  double rate = 1;             ///< open loop: requests (sessions) per second
  double burstiness = 1;       ///< gamma shape; 1 = Poisson, < 1 burstier, > 1 more regular
  double from_rate = 1, to_rate = 1;  ///< ramp: rate rises linearly over the stage's duration
  double speedup = 1;          ///< replay: the log's arrival times divided by this
  std::string log_path;        ///< replay: the request log (Workload::replay is its trace)

  bool is_open_loop() const { return kind != Kind::kConcurrency; }
  /// "concurrency=8", "poisson@5/s": a label for tables and plots.
  std::string label() const;
  /// The load figure plotted on sweep x-axes: concurrency, or the (mean) rate.
  double load_value() const;
};

struct StageSpec {
  ArrivalSpec arrival;
  int num_requests = 0;     ///< 0 = bounded by duration_s only
  double duration_s = 0;    ///< 0 = bounded by num_requests only; ramps need it
  bool is_warmup = false;   ///< sent, but excluded from every figure (--warmup): caches and JITs warm, queues settle
};

/// Shared-prefix groups: the prompt-caching opportunity. A prefixed request's prompt is the group's prefix
/// followed by its own input_tokens.
struct PrefixSpec {
  int num_groups = 1;
  int length_tokens = 0;
  double zipf_exponent = 0;  ///< popularity of group k is proportional to 1 / k^s; 0 = uniform
  double fraction = 1;       ///< share of sessions that use a prefix at all
};

/// Multi-turn sessions: each turn adds a user message after the previous answer, so history grows.
struct SessionSpec {
  int num_turns = 1;
  double think_time_ms = 0;      ///< pause between an answer and the next turn
  double think_time_max_ms = 0;  ///< > think_time_ms: each pause drawn uniformly from [think_time_ms, this]
};

struct ModelWeight {
  std::string model;  ///< sent as the request's "model" (a LoRA adapter is addressed by its served name)
  double weight = 1;
};

/// Token prices (USD per 1M tokens) or an hourly instance price, per target.
struct PriceTable {
  std::optional<double> input_per_mtok, cached_input_per_mtok, cache_write_per_mtok, output_per_mtok;
  /// Writes retained an hour or more (Anthropic's 1h TTL, OpenAI's 24h); unset: cache_write_per_mtok.
  std::optional<double> cache_write_1h_per_mtok;
  std::optional<double> hourly_usd;
  bool is_set() const { return input_per_mtok || output_per_mtok || hourly_usd; }
};

/// Latency objectives a request must meet to count toward goodput (unset ones are not checked).
struct SloSpec {
  std::optional<double> ttft_ms, tpot_ms, itl_ms, e2e_ms;
  bool is_set() const { return ttft_ms || tpot_ms || itl_ms || e2e_ms; }
};

struct TargetSpec {
  std::string name;
  std::string url;    ///< base URL, e.g. http://127.0.0.1:8000/v1
  std::string model;  ///< default model name for this target
  ApiKind api = ApiKind::kChat;
  std::vector<std::pair<std::string, std::string>> headers;
  size_t max_connections = 4096;
  std::string ca_file;  ///< https: trust this PEM CA bundle instead of the system store
  PriceTable price;
};

struct Workload {
  uint64_t seed = 42;
  LengthDistribution input_tokens = LengthDistribution::fixed(256);
  LengthDistribution output_tokens = LengthDistribution::fixed(128);
  std::vector<StageSpec> stages;
  std::optional<PrefixSpec> prefix;
  SessionSpec sessions;
  std::vector<ModelWeight> models;  ///< empty: each target's own model
  bool ignore_eos = false;
  std::optional<double> temperature;
  /// Ask the server to retain each session's prompt (tern pins it; docs/prompt-caching.md). OpenAI
  /// targets: sent as prompt_cache_retention ("24h" | "in_memory") with prompt_cache_key = the
  /// session; messages targets: cache_control with this TTL ("5m" | "1h") on the system prompt and the
  /// conversation. Empty: not sent.
  std::string cache_retention;
  double timeout_s = 600;
  SloSpec slo;
  std::vector<TargetSpec> targets;
  /// A replay stage's requests (arrival type "replay"; --replay): loaded with the workload.
  std::shared_ptr<const ReplayTrace> replay;
  bool replay_logged_models = false;  ///< send each logged request's model instead of the target's
  /// Prompts with real text ("dataset": {path, max_prompt_tokens}; --dataset): sessions replay its
  /// conversations instead of generated prompts. fit_dataset() must have run before planning.
  std::shared_ptr<Dataset> dataset;
  int max_prompt_tokens = 0;  ///< dataset prompts longer than this are left out (0: no limit)
};

/// How an API takes a key: Anthropic's x-api-key for messages, an OpenAI bearer token otherwise.
std::pair<std::string, std::string> api_key_header(ApiKind api, std::string_view key);

/// The price table as a workload file writes it (only the prices that are set).
nlohmann::json price_to_json(const PriceTable& price);

/// Parses a workload file's JSON. Relative dataset paths are resolved against `base_dir`.
Result<Workload> parse_workload(const nlohmann::json& spec, const std::string& base_dir);
Result<Workload> load_workload_file(const std::string& path);
/// The workload in a sentence or two, for reports: arrivals per stage, lengths, prefixes, sessions,
/// dataset or replay.
std::string describe_workload(const Workload& workload);

/// The spec as JSON (what the report records and `profile` writes); parse_workload reads it back.
nlohmann::json workload_to_json(const Workload& workload);

Result<LengthDistribution> parse_length_distribution(const nlohmann::json& spec, const std::string& base_dir);
Result<ArrivalSpec> parse_arrival(const nlohmann::json& spec);
Result<PriceTable> parse_price(const nlohmann::json& spec);
/// "in=3,cached=0.3,write=3.75,out=15" or "hourly=2.5" (the --price flag).
Result<PriceTable> parse_price_flag(std::string_view text);
/// "ttft=500ms,tpot=50ms,itl=100ms,e2e=10s" (the --slo flag).
Result<SloSpec> parse_slo_flag(std::string_view text);

}  // namespace tern::bench
