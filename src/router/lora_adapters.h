#pragma once
// LoRA adapters as public model names. Each adapter of a local base model is a deployment (kind
// "lora") whose provider hands requests to the base model's engine with the adapter named, so requests
// of every adapter and of the base share that engine's batches. Its public name is the adapter's name,
// with the alias "<base>:<name>"; /v1/models lists it with `parent` = the base model.
//
// Adapters come from the config or --lora at start, and from POST /v1/load_lora_adapter at run time;
// POST /v1/unload_lora_adapter removes the name at once (new requests get 404) and answers when the
// requests still using the adapter have finished. Loads and unloads run on this object's own thread,
// never on an I/O thread or the engine's; so does reading an adapter that the LRU limit dropped from
// memory when a request for it comes (a thread of its own: such a read never waits behind an unload).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "router/local_model.h"
#include "router/router.h"
#include "util/result.h"
#include "util/work_queue.h"

namespace tern::router {

class LoraAdapters {
 public:
  explicit LoraAdapters(Router& router) : router_(router) {}

  /// Routes a base model's configured adapters (after the base model itself is routed); its adapters
  /// are priced as the base model (`prices`). When the base is loaded each adapter is read now, so a
  /// bad file stops the server at start.
  Result<void> add_base(const std::shared_ptr<LocalModel>& base, const Prices& prices, std::map<std::string, std::string> labels = {});

  /// Registers and routes an adapter on `base` (empty: the server's only local model). The file is
  /// read and checked against the base now when the base is loaded.
  Result<void> load(const std::string& name, const std::string& path, const std::string& base, float scale = 1.0f);
  /// Unroutes and unregisters it, then waits up to `wait` for the requests still using it.
  Result<void> unload(const std::string& name, std::chrono::milliseconds wait);

  /// Runs `work` on this object's thread (for the HTTP handlers).
  void run(std::function<void()> work) { admin_work_.post(std::move(work)); }

 private:
  struct Base {
    std::shared_ptr<LocalModel> model;
    Prices prices;  // its adapters are priced as the base model
    std::map<std::string, std::string> labels;  // and run where it runs
  };
  Result<void> route(const Base& base, const std::string& name);

  Router& router_;
  std::mutex mutex_;  // guards the maps; loads and unloads run one at a time on the worker anyway
  std::map<std::string, Base> bases_;
  std::map<std::string, std::string> base_of_;  // adapter name -> base model name
  WorkQueue admin_work_;  // loads and unloads asked for over HTTP
  WorkQueue cold_loads_;  // adapters read back from disk for a request
};

}  // namespace tern::router
