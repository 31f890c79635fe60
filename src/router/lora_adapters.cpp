#include "router/lora_adapters.h"

#include <fmt/format.h>

#include <filesystem>

#include "router/pending_call.h"

namespace tern::router {
namespace {

/// An adapter's deployment: the base model's engine, with the adapter named on every request.
class AdapterProvider final : public Provider {
 public:
  AdapterProvider(std::shared_ptr<LocalModel> base, std::string adapter, WorkQueue& cold_loads)
      : base_(std::move(base)), adapter_(std::move(adapter)), cold_loads_(cold_loads) {}

  std::expected<std::shared_ptr<Call>, wire::ApiError> submit(const wire::Request& request, wire::EventSink sink) override {
    wire::Request with_adapter = request;
    with_adapter.adapter = adapter_;
    // In memory (or the base model itself is not loaded: its own cold start handles both): at once.
    if (base_->adapters().is_loaded(adapter_) || !base_->is_loaded()) return base_->submit(with_adapter, std::move(sink));
    // Dropped by the LRU limit: read it again off this (I/O) thread, then submit.
    // (An adapter in use is never dropped, so one read here serves its request.)
    auto pending = std::make_shared<PendingCall>();
    cold_loads_.post([base = base_, pending, request = std::move(with_adapter), sink = std::move(sink)] {
      auto adapter = base->loaded_adapter(request.adapter);
      pending->start([&]() -> std::shared_ptr<Call> {
        if (!adapter) {
          const bool gone = !base->adapters().contains(request.adapter);
          sink(wire::final_error_event(gone ? wire::ApiError{.status = 404, .message = adapter.error().message, .type = "invalid_request_error",
                                                           .param = "model", .code = "model_not_found", .is_retryable = false, .retry_after = {}}
                                           : wire::server_error(500, adapter.error().message, "adapter_load_failed")));
          return nullptr;
        }
        auto call = base->submit(request, sink);
        if (call) return *call;
        sink(wire::final_error_event(call.error()));
        return nullptr;
      });
    });
    return pending;
  }
  int64_t num_in_flight() const override { return base_->num_in_flight(); }

 private:
  std::shared_ptr<LocalModel> base_;
  std::string adapter_;
  WorkQueue& cold_loads_;
};

}  // namespace

Result<void> LoraAdapters::route(const Base& base, const std::string& name) {
  const std::string& base_name = base.model->config().name;
  const std::string deployment = base_name + ":" + name;
  if (!router_.has_deployment(deployment)) {
    router_.add_deployment({.name = deployment, .kind = "lora", .prices = base.prices, .max_concurrency = 0, .retries = 0, .breaker = {},
                            .labels = base.labels, .kv_source = {}},
                           std::make_shared<AdapterProvider>(base.model, name, cold_loads_));
  }
  router_.add_model(name, {deployment}, Policy::kLeastOutstanding, {}, base.model->max_model_len(), base_name);
  router_.add_unlisted_alias(name, deployment);  // "base:adapter" routes too, as its deployment's name
  std::lock_guard lock(mutex_);
  base_of_[name] = base_name;
  return {};
}

Result<void> LoraAdapters::add_base(const std::shared_ptr<LocalModel>& base, const Prices& prices, std::map<std::string, std::string> labels) {
  const Base entry{.model = base, .prices = prices, .labels = std::move(labels)};
  {
    std::lock_guard lock(mutex_);
    bases_[base->config().name] = entry;
  }
  for (const auto& status : base->adapters().list()) {
    const std::string& name = status.spec.name;
    if (router_.has_model(name)) return fail("LoRA adapter '{}': a model of that name already exists", name);
    if (base->is_loaded()) {
      const auto start = std::chrono::steady_clock::now();
      auto adapter = base->loaded_adapter(name);
      if (!adapter) return std::unexpected(adapter.error());
      std::fprintf(stderr, "tern serve: LoRA adapter '%s' on '%s': rank %lld, %.1f MiB, %s, read in %.2f s\n", name.c_str(),
                   base->config().name.c_str(), static_cast<long long>((*adapter)->max_rank), (*adapter)->bytes / 1048576.0,
                   (*adapter)->path.c_str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (auto ok = route(entry, name); !ok) return ok;
  }
  return {};
}

Result<void> LoraAdapters::load(const std::string& name, const std::string& path, const std::string& base_name, float scale) {
  Base entry;
  {
    std::lock_guard lock(mutex_);
    if (base_name.empty()) {
      if (bases_.size() != 1) return fail("this server has {} local models: name the adapter's base with \"base_model\"", bases_.size());
      entry = bases_.begin()->second;
    } else {
      auto it = bases_.find(base_name);
      if (it == bases_.end()) return fail("no local model named '{}' to load the adapter on", base_name);
      entry = it->second;
    }
  }
  const std::shared_ptr<LocalModel>& base = entry.model;
  if (router_.has_model(name)) return fail("a model or adapter named '{}' already exists", name);
  if (auto ok = base->adapters().add({.name = name, .path = path, .scale = scale}); !ok) return ok;
  if (base->is_loaded()) {
    auto adapter = base->loaded_adapter(name);
    if (!adapter) {
      (void)base->adapters().remove(name);
      return std::unexpected(adapter.error());
    }
  } else if (std::error_code error; !std::filesystem::exists(path, error)) {
    (void)base->adapters().remove(name);
    return fail("LoRA adapter {} does not exist", path);
  }
  return route(entry, name);
}

Result<void> LoraAdapters::unload(const std::string& name, std::chrono::milliseconds wait) {
  std::shared_ptr<LocalModel> base;
  {
    std::lock_guard lock(mutex_);
    auto it = base_of_.find(name);
    if (it == base_of_.end()) return fail("no LoRA adapter named '{}' is loaded", name);
    base = bases_.at(it->second).model;
    base_of_.erase(it);
  }
  router_.remove_model(name);
  auto adapter = base->adapters().remove(name);
  if (!adapter) return std::unexpected(adapter.error());
  // Requests that hold it finish with it; the memory goes with the last of them.
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (*adapter && adapter->use_count() > 1) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail("adapter '{}' is unloaded for new requests; {} requests still use it", name, adapter->use_count() - 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {};
}

}  // namespace tern::router
