#pragma once
// The LoRA adapters one base model serves: names registered (at start or at run time) and the adapters
// held in memory, at most `max_loaded` of them, least recently used dropped first. An adapter is read
// from disk on its first request (and again after it was dropped), on the requesting thread — never the
// engine thread, so other requests keep running meanwhile; concurrent requests for it wait for one load.
//
// Requests hold their adapter (a shared_ptr) until they finish: dropping it from memory or unregistering
// it never pulls it from under a running request, and it is freed with the last one. Adapters in use are
// not dropped to meet the limit (the limit is then exceeded until they finish).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/lora.h"
#include "util/result.h"

namespace tern::engine {

struct AdapterSpec {
  std::string name;
  std::string path;   ///< GGUF LoRA file or PEFT directory
  float scale = 1.0f;
};

struct AdapterStatus {
  AdapterSpec spec;
  bool loaded = false;
  int64_t in_use = 0;   ///< requests holding it
  uint64_t bytes = 0;   ///< when loaded
  int64_t rank = 0;     ///< when loaded
  double load_seconds = 0;  ///< the last load
};

/// Whether `name` may name an adapter: 1-64 of [A-Za-z0-9._-] (it appears in metric labels and lists).
Result<void> check_adapter_name(const std::string& name);

class AdapterRegistry {
 public:
  AdapterRegistry(int64_t max_loaded, int64_t max_rank, backend::LoraWeightType weight_type = backend::LoraWeightType::F16)
      : max_loaded_(max_loaded), max_rank_(max_rank), weight_type_(weight_type) {}

  /// Registers an adapter; it is loaded on first use. An error for a bad or taken name.
  Result<void> add(AdapterSpec spec);
  /// Unregisters it and hands back its loaded copy (null if none), which in-flight requests may still
  /// hold; false-y error when unknown.
  Result<std::shared_ptr<const model::LoraAdapter>> remove(const std::string& name);
  bool contains(const std::string& name) const;
  /// Whether it is in memory now (acquire() would not read the disk).
  bool is_loaded(const std::string& name) const;

  /// The adapter, loaded for a base model with `config` if it is not in memory.
  Result<std::shared_ptr<const model::LoraAdapter>> acquire(const std::string& name, const model::ModelConfig& config);

  std::vector<AdapterStatus> list() const;
  int64_t max_loaded() const { return max_loaded_; }
  int64_t max_rank() const { return max_rank_; }

 private:
  struct Entry {
    AdapterSpec spec;
    std::mutex load_mutex;  // one load at a time per adapter
    std::shared_ptr<const model::LoraAdapter> loaded;  // guarded by the registry's mutex_
    std::chrono::steady_clock::time_point last_used{};
    double load_seconds = 0;
  };
  /// Drops the least recently used loaded adapters no request holds, beyond max_loaded_ (mutex_ held).
  void evict_locked(const Entry* keep);

  const int64_t max_loaded_, max_rank_;
  const backend::LoraWeightType weight_type_;  // how loaded adapters keep their weights
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace tern::engine
