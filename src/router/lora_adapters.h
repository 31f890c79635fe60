#pragma once
// LoRA adapters as public model names. Each adapter of a local base model is a deployment (kind
// "lora") whose provider hands requests to the base model's engine with the adapter named, so requests
// of every adapter and of the base share that engine's batches. Its public name is the adapter's name,
// with the alias "<base>:<name>"; /v1/models lists it with `parent` = the base model.
//
// Adapters come from the config or --lora at start, and from POST /v1/load_lora_adapter at run time;
// POST /v1/unload_lora_adapter removes the name at once (new requests get 404) and answers when the
// requests still using the adapter have finished. Loads and unloads run on this object's own thread,
// never on an I/O thread or the engine's.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "router/local_model.h"
#include "router/router.h"
#include "util/result.h"

namespace tern::router {

class LoraAdapters {
 public:
  explicit LoraAdapters(Router& router);
  ~LoraAdapters();

  /// Routes a base model's configured adapters (after the base model itself is routed). When the base
  /// is loaded each adapter is read now, so a bad file stops the server at start.
  Result<void> add_base(const std::shared_ptr<LocalModel>& base);

  /// Registers and routes an adapter on `base` (empty: the server's only local model). The file is
  /// read and checked against the base now when the base is loaded.
  Result<void> load(const std::string& name, const std::string& path, const std::string& base, float scale = 1.0f);
  /// Unroutes and unregisters it, then waits up to `wait` for the requests still using it.
  Result<void> unload(const std::string& name, std::chrono::milliseconds wait);

  /// Runs `work` on this object's thread (for the HTTP handlers).
  void run(std::function<void()> work);

 private:
  Result<void> route(const std::shared_ptr<LocalModel>& base, const std::string& name);

  Router& router_;
  std::mutex mutex_;  // guards the maps; loads and unloads run one at a time on the worker anyway
  std::map<std::string, std::shared_ptr<LocalModel>> bases_;
  std::map<std::string, std::string> base_of_;  // adapter name -> base model name

  std::mutex queue_mutex_;
  std::condition_variable queue_wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace tern::router
