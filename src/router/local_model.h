#pragma once
// A local model as a deployment that may be loaded and unloaded while the server runs: loaded at
// start (`preload`) or on its first request (a cold start: the request waits, the load is timed and
// logged), unloaded after `idle_unload` seconds without requests (scale to zero), and kept within the
// server's memory budget (weights + KV cache of every loaded model) by unloading idle models, least
// recently used first.
//
//   unloaded ──submit──► loading ──done──► loaded ──idle_unload──► unloaded
//                          │ requests queue        │ requests go to the engine
//                          └─failed: they get the load error (503), the next request tries again

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/lora/adapter_registry.h"
#include "observe/live_stats.h"
#include "router/local_provider.h"

namespace tern::router {

struct LocalModelConfig {
  std::string name;           ///< the public name (and the deployment's)
  std::string model;          ///< alias or .gguf path
  std::string chat_template;  ///< Jinja file; empty: the model's own
  int threads = 0;            ///< 0: one per core
  int64_t context = 0;        ///< 0: the model's, at most 8192
  int64_t kv_cache_memory = 0;  ///< bytes; 0: the default (a quarter of memory, at most 4 GiB)
  engine::SchedulerConfig scheduler;
  engine::SpeculationConfig speculation;  ///< speculative decoding (off unless configured)
  int64_t max_waiting = 4096;
  bool prefix_caching = true;
  double kv_pin_fraction = 0.5;  ///< most of the KV cache that retention (cache_control, 24h) may pin, all orgs
  /// KV-cache events (observe/kv_events.h): the indexer's ZeroMQ endpoint (empty: none), this server's
  /// identity in the topic (empty: the host name) and the hash seed the indexer uses.
  std::string kv_events_endpoint, kv_events_pod, kv_events_hash_seed;
  int64_t kv_pin_quota = 0;      ///< bytes of pinned KV cache per org; 0: no limit below kv_pin_fraction
  std::string kv_disk_cache;     ///< directory of the KV cache's disk tier; empty: none
  int64_t kv_disk_bytes = int64_t{20} << 30;  ///< its size cap
  bool preload = true;
  double idle_unload_s = 0;   ///< 0: never
  std::vector<engine::AdapterSpec> loras;  ///< LoRA adapters served on this model from the start
  int64_t max_loras = 64;      ///< adapters kept in memory (LRU); more may be registered
  int64_t max_lora_rank = 64;  ///< adapters of a higher rank are refused
  backend::LoraWeightType lora_dtype = backend::LoraWeightType::F16;  ///< how adapters keep their weights
};

/// What can be checked of a local model without loading it, so that a server refuses at start what
/// would fail on the first request (a lazy model): the model is a catalog alias, or a readable GGUF
/// file of a supported architecture; a chat_template file, if named, is readable. The error names
/// what is wrong, not where in the config (the caller adds that).
Result<void> check_local_model(const LocalModelConfig& config);

class LocalModelSet;

class LocalModel final : public Provider {
 public:
  LocalModel(LocalModelConfig config, LocalModelSet& set);
  ~LocalModel() override;

  const LocalModelConfig& config() const { return config_; }
  /// The LoRA adapters served on this model (they outlive loads and unloads of the model).
  engine::AdapterRegistry& adapters() const { return *adapters_; }
  /// Adapter `name` read into memory for the loaded model (checked against it); an error when the
  /// model is not loaded or the file does not fit it.
  Result<std::shared_ptr<const model::LoraAdapter>> loaded_adapter(const std::string& name) const;
  /// Loads now, on this thread (preload); the error names what failed.
  Result<void> load();
  /// Whether loaded, and its engine's context then (else 0).
  bool is_loaded() const;
  int64_t max_model_len() const;
  /// The model file's name once loaded (requests may name the model by it), else empty.
  std::string file_name() const;
  int64_t resident_bytes() const;
  /// The engine's Prometheus metrics with a model label, or empty when unloaded.
  std::string metrics_text() const;
  /// The engine's figures for the web console (zeros while unloaded).
  observe::EngineSample engine_sample() const;
  double last_load_seconds() const;
  int64_t num_loads() const;

  std::expected<std::shared_ptr<Call>, wire::ApiError> submit(const wire::Request& request, wire::EventSink sink) override;
  int64_t num_in_flight() const override;
  void stop() override;

  /// Unloads if idle past idle_unload (called by the set's janitor); whether it did.
  bool unload_if_idle(std::chrono::steady_clock::time_point now, bool ignore_idle_time);
  std::chrono::steady_clock::time_point last_used() const;

 private:
  struct Loaded;
  struct Pending;
  void load_in_background();
  Result<std::unique_ptr<Loaded>> do_load();

  LocalModelConfig config_;
  LocalModelSet& set_;
  std::unique_ptr<engine::AdapterRegistry> adapters_;
  mutable std::mutex mutex_;
  std::shared_ptr<Loaded> loaded_;  // shared: a submit in progress keeps it alive past an unload
  bool loading_ = false;
  bool stopped_ = false;
  std::deque<std::shared_ptr<Pending>> pending_;
  std::chrono::steady_clock::time_point last_used_;
  double last_load_seconds_ = 0;
  int64_t num_loads_ = 0;
  std::thread loader_;
};

/// Every local model of the server, its memory budget and the idle janitor.
class LocalModelSet {
 public:
  explicit LocalModelSet(int64_t memory_budget_bytes);  ///< 0: no budget
  ~LocalModelSet();

  /// A new model of the set (the set keeps it; the router shares it as a deployment's provider).
  std::shared_ptr<LocalModel> add(LocalModelConfig config);
  /// Makes room for `bytes` by unloading idle models, least recently used first; false if it cannot.
  bool reserve(int64_t bytes, const LocalModel* for_model);
  int64_t budget_bytes() const { return budget_bytes_; }
  std::string metrics_text() const;
  std::vector<observe::EngineSample> engine_samples() const;
  void stop_all();

 private:
  void janitor();

  int64_t budget_bytes_;
  std::vector<std::shared_ptr<LocalModel>> models_;
  std::mutex janitor_mutex_;
  std::condition_variable janitor_wake_;
  bool janitor_stop_ = false;
  std::thread janitor_;
};

}  // namespace tern::router
