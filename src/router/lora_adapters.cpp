#include "router/lora_adapters.h"

#include <fmt/format.h>

#include <filesystem>

namespace tern::router {
namespace {

/// An adapter's deployment: the base model's engine, with the adapter named on every request.
class AdapterProvider final : public Provider {
 public:
  AdapterProvider(std::shared_ptr<LocalModel> base, std::string adapter) : base_(std::move(base)), adapter_(std::move(adapter)) {}

  std::expected<std::shared_ptr<Call>, api::ApiError> submit(const api::Request& request, api::EventSink sink) override {
    api::Request with_adapter = request;
    with_adapter.adapter = adapter_;
    return base_->submit(with_adapter, std::move(sink));
  }
  int64_t num_in_flight() const override { return base_->num_in_flight(); }

 private:
  std::shared_ptr<LocalModel> base_;
  std::string adapter_;
};

}  // namespace

LoraAdapters::LoraAdapters(Router& router) : router_(router) {
  worker_ = std::thread([this] {
    std::unique_lock lock(queue_mutex_);
    while (true) {
      queue_wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      auto work = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      work();
      lock.lock();
    }
  });
}

LoraAdapters::~LoraAdapters() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  queue_wake_.notify_all();
  worker_.join();
}

void LoraAdapters::run(std::function<void()> work) {
  {
    std::lock_guard lock(queue_mutex_);
    queue_.push_back(std::move(work));
  }
  queue_wake_.notify_one();
}

Result<void> LoraAdapters::route(const std::shared_ptr<LocalModel>& base, const std::string& name) {
  const std::string& base_name = base->config().name;
  const std::string deployment = base_name + ":" + name;
  if (!router_.has_deployment(deployment)) {
    router_.add_deployment({.name = deployment, .kind = "lora", .prices = {}, .max_concurrency = 0, .retries = 0, .breaker = {}},
                           std::make_shared<AdapterProvider>(base, name));
  }
  router_.add_model(name, {deployment}, Policy::kLeastOutstanding, {deployment}, base->max_model_len(), base_name);
  std::lock_guard lock(mutex_);
  base_of_[name] = base_name;
  return {};
}

Result<void> LoraAdapters::add_base(const std::shared_ptr<LocalModel>& base) {
  {
    std::lock_guard lock(mutex_);
    bases_[base->config().name] = base;
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
    if (auto ok = route(base, name); !ok) return ok;
  }
  return {};
}

Result<void> LoraAdapters::load(const std::string& name, const std::string& path, const std::string& base_name, float scale) {
  std::shared_ptr<LocalModel> base;
  {
    std::lock_guard lock(mutex_);
    if (base_name.empty()) {
      if (bases_.size() != 1) return fail("this server has {} local models: name the adapter's base with \"base_model\"", bases_.size());
      base = bases_.begin()->second;
    } else {
      auto it = bases_.find(base_name);
      if (it == bases_.end()) return fail("no local model named '{}' to load the adapter on", base_name);
      base = it->second;
    }
  }
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
  return route(base, name);
}

Result<void> LoraAdapters::unload(const std::string& name, std::chrono::milliseconds wait) {
  std::shared_ptr<LocalModel> base;
  {
    std::lock_guard lock(mutex_);
    auto it = base_of_.find(name);
    if (it == base_of_.end()) return fail("no LoRA adapter named '{}' is loaded", name);
    base = bases_.at(it->second);
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
