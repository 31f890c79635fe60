#pragma once
// The router: public model names → deployments (a local engine, a remote endpoint), a policy that
// orders a request's candidates, retries and fallbacks, a circuit breaker per deployment, and the
// cost of every answered call.
//
//   submit(request) ─► candidates = for each name in [model] + request.fallback_models (OpenRouter
//                       `models`): its deployments, filtered by `provider` {only, ignore, max_price},
//                       skipping open breakers and full deployments, ordered by `provider.order`,
//                       then `provider.sort`, then the model's policy
//                    ─► try candidate 1; a retryable failure (connect, 429, 5xx, timeout) before the
//                       first event reached the client: retry the same deployment after a jittered
//                       backoff (429: its Retry-After), up to `retries` times, then the next candidate
//                    ─► once an event has been forwarded the call is committed: a later failure ends
//                       the client's stream with an error, never a silent switch or truncation
//
// Threading: submit() and Call::cancel() from any thread; provider events arrive on provider threads;
// backoff timers run on the router's own timer thread. One mutex per call and one per deployment.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "metering/token_cost.h"
#include "observe/kv_block_index.h"
#include "router/prompt_encoder.h"
#include "router/provider.h"

namespace tern::router {

/// A deployment's prices, USD per 1M tokens; a cached_input or cache_write of 0 means "as input".
using Prices = metering::TokenPrices;

/// The cost of one call from its usage: cached and cache-write tokens are priced apart from the rest
/// of the prompt (cached_input defaults to input when a deployment states no cached price).
double call_cost_usd(const Prices& prices, const wire::Usage& usage);

/// How a model's deployments are ordered: cheapest first; lowest time to first token; fewest requests in
/// flight; a hash of the prompt's start (a repeated prefix lands where it was cached); at random; the
/// replica whose KV-cache events say it holds most of the prompt (ties: as prefix-affinity). The last
/// two bound load as prefix-affinity does: a deployment far above the mean goes last.
enum class Policy { kPrice, kLatency, kLeastOutstanding, kPrefixAffinity, kRandom, kKvEvents };
std::string_view policy_name(Policy policy);

struct BreakerConfig {
  int failures_to_open = 5;                       ///< failures within the window that open the breaker
  std::chrono::milliseconds window{30'000};
  std::chrono::milliseconds open_for{10'000};     ///< then one probe request (half-open)
};

/// The kv-events policy's default weight of an output token in prompt tokens of prefill: about what
/// a CPU replica pays (a 2k-deep cached request on one thread: ~1.7 ms per prefill token, 10-14 ms per
/// decode token in a batch of 4). A GPU, whose prefill is far cheaper per token, wants more.
inline constexpr double kDefaultDecodeTokenCost = 8;

struct DeploymentConfig {
  std::string name;  ///< unique; what `provider.only` / `order` / `ignore` name
  std::string kind;  ///< "local", "openai", "anthropic" (for /v1/models and metrics)
  Prices prices;
  int64_t max_concurrency = 0;  ///< 0: unbounded
  int retries = 1;              ///< extra attempts on the same deployment before falling back
  BreakerConfig breaker;
  std::map<std::string, std::string> labels;  ///< `region`, `compliance`, any key/value: what placement policies match
  /// "POD@MODEL": the KV-event source describing this deployment's cache (the kv-events policy); empty: none.
  std::string kv_source;
};

/// Whether `policy` lets a request run on `deployment`; if not, why (for the refusal).
bool placement_allows(const wire::PlacementPolicy& policy, const DeploymentConfig& deployment, std::string* why = nullptr);
/// "regions eu-west, eu-central; labels compliance=gdpr; never remote".
std::string describe_placement(const wire::PlacementPolicy& policy);

/// A deployment's live state, for metrics and the latency policy.
struct DeploymentStats {
  std::string name;
  std::string kind;
  int64_t outstanding = 0;
  int64_t queued_work = 0;  ///< kv-events: the work of its requests in flight, in prompt tokens of prefill
  int64_t requests = 0;
  int64_t failures = 0;
  double ttft_ewma_s = 0;  ///< 0 until measured
  double itl_ewma_s = 0;
  std::string breaker;     ///< "closed", "open", "half_open"
};

struct ModelInfo {
  std::string name;
  std::vector<std::string> deployments;
  int64_t max_model_len = 0;  ///< the local engine's context, 0 for remote
  std::string parent;         ///< a LoRA adapter's base model, else empty
  std::vector<std::string> aliases;  ///< other names that route here (`aliases:` in tern.yaml), listed in /v1/models
};

class Router {
 public:
  Router();
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // The tables may change while the server runs (LoRA adapters come and go); deployments are never
  // removed, only the public names that lead to them.
  /// Adds a deployment (names must be unique).
  void add_deployment(DeploymentConfig config, std::shared_ptr<Provider> provider);
  /// A public model name over deployments added before; `aliases` are other names it answers to;
  /// `parent`: the base model of a LoRA adapter (shown in /v1/models).
  void add_model(std::string name, std::vector<std::string> deployments, Policy policy, std::vector<std::string> aliases = {},
                 int64_t max_model_len = 0, std::string parent = {});
  /// Another name for `model` that routes like it but is not listed (a local model's file name);
  /// false if `model` is unknown or `alias` taken.
  bool add_unlisted_alias(const std::string& model, const std::string& alias);
  /// The kv-events policy's inputs: what each replica's cache holds (deployments name their source in
  /// DeploymentConfig::kv_source) and the hash seed the replicas hash with.
  void set_kv_index(std::shared_ptr<const observe::KvBlockIndex> index, std::string hash_seed);
  /// How `model`'s requests become the tokens its replicas see (the kv-events policy), and what an
  /// output token costs a replica in prompt tokens of prefill (weighing a replica's queued work
  /// against recomputing a prompt elsewhere); false if `model` is unknown.
  bool set_prompt_encoder(const std::string& model, std::shared_ptr<const PromptEncoder> encoder,
                          double decode_token_cost = kDefaultDecodeTokenCost);
  /// Removes a public name and its aliases (requests for it get 404 from now on); false if unknown.
  bool remove_model(const std::string& name);

  bool has_model(const std::string& name) const;
  bool has_deployment(const std::string& name) const;
  std::vector<ModelInfo> models() const;
  std::vector<DeploymentStats> stats() const;
  /// Requests in flight on every deployment.
  int64_t num_in_flight() const;
  /// Stops every provider (shutdown): what is in flight ends.
  void stop_all();

  /// The most `request` could cost on any deployment it may go to, for these token counts (budgets
  /// hold this much while it runs).
  double max_cost_usd(const wire::Request& request, int64_t prompt_tokens, int64_t completion_tokens) const;

  /// Routes and starts `request`; events reach `sink` with `model` set to the public name that
  /// answered and, on the last, usage.cost_usd. An error here: nothing could start (unknown model, a
  /// non-retryable refusal, every candidate failing at once).
  std::expected<std::shared_ptr<Call>, wire::ApiError> submit(const wire::Request& request, wire::EventSink sink);

  struct Deployment;
  struct ModelRoute;
  struct Charge;
  struct Candidate;
  class Attempt;

 private:
  /// `ordered` false: the same deployments in no particular order, without the policy's work (unless
  /// fallbacks are off, where only the first is kept and the order decides which).
  std::vector<Candidate> candidates(const wire::Request& request, wire::ApiError& why_none, bool ordered = true) const;
  /// prefix-affinity and kv-events: the deployments most likely to hold the prompt's prefix first.
  /// kv-events with the prompt's tokens: the least work once this request is added (its uncached
  /// prefill there plus what is queued), and what the request will cost each deployment; else empty.
  std::map<const Deployment*, Charge> order_by_prefix(const wire::Request& request, const ModelRoute& route, bool use_kv_events,
                                                      std::vector<Deployment*>& list) const;

  mutable std::shared_mutex table_mutex_;  // guards the three tables below
  std::map<std::string, std::unique_ptr<Deployment>> deployments_;
  std::map<std::string, std::shared_ptr<ModelRoute>> models_;  // by name and by alias
  std::vector<std::shared_ptr<ModelRoute>> model_list_;
  std::shared_ptr<const observe::KvBlockIndex> kv_index_;
  uint64_t kv_root_hash_ = 0;
  struct Timers;
  std::unique_ptr<Timers> timers_;
};

}  // namespace tern::router
