#include "router/local_model.h"

#include "router/pending_call.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "backend/backend.h"
#include "engine/engine_stack.h"
#include "gguf/gguf_file.h"
#include "model/catalog.h"
#include "model/config.h"
#include "observe/kv_events.h"
#include "util/prometheus.h"

namespace tern::router {
namespace {

using Clock = std::chrono::steady_clock;

/// Joins the Prometheus text of several engines so that each metric family keeps one HELP/TYPE
/// header with every model's samples under it (duplicate headers are invalid exposition format).
std::string merge_families(const std::vector<std::string>& texts) {
  std::vector<std::string> order;
  std::map<std::string, std::pair<std::string, std::string>> families;  // name -> (header, samples)
  for (const std::string& text : texts) {
    std::string current;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      const std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
        const std::string name = line.substr(7, line.find(' ', 7) - 7);
        if (!families.contains(name)) order.push_back(name);
        auto& header = families[name].first;  // its HELP and TYPE lines, each kept once
        if (header.find(line.substr(0, 7 + name.size()) + ' ') == std::string::npos) header += line + "\n";
        current = name;
      } else if (!line.empty()) {
        if (current.empty()) {
          current = line.substr(0, line.find_first_of("{ "));
          if (!families.contains(current)) order.push_back(current);
        }
        families[current].second += line + "\n";
      }
    }
  }
  std::string out;
  for (const auto& name : order) out += families[name].first + families[name].second;
  return out;
}

}  // namespace

Result<void> check_local_model(const LocalModelConfig& config) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!config.chat_template.empty() && !fs::is_regular_file(config.chat_template, error)) {
    return fail("chat_template {}: no such file", config.chat_template);
  }
  // A catalog alias is fetched and verified on load (pulled now if need be would delay the start).
  if (!fs::exists(config.model, error) && models::find_in_catalog(config.model) != nullptr) return {};
  if (!fs::exists(config.model, error)) {
    std::string aliases;
    for (const auto& entry : models::catalog()) aliases += (aliases.empty() ? "" : ", ") + entry.alias;
    return fail("'{}' is neither a file nor a known model (known: {})", config.model, aliases);
  }
  if (!fs::is_regular_file(config.model, error)) return fail("{} is not a file", config.model);
  // The header and metadata only (a read-only map): the architecture and its hyperparameters.
  auto file = gguf::GgufFile::open(config.model);
  if (!file) return std::unexpected(file.error());
  if (auto model_config = model::read_config(*file); !model_config) return std::unexpected(model_config.error());
  return {};
}

struct LocalModel::Loaded {
  std::unique_ptr<engine::EngineStack> stack;  // backend, model, engine
  std::unique_ptr<LocalProvider> provider;      // destroyed first: it refers to the stack's model and engine
  engine::Engine& engine() const { return *stack->engine; }
  model::Model& model() const { return *stack->model; }
};

/// A request that arrived while the model was loading; it goes to the engine when the load ends.
struct LocalModel::Pending final : PendingCall {
  wire::Request request;
  wire::EventSink sink;
};

LocalModel::LocalModel(LocalModelConfig config, LocalModelSet& set)
    : config_(std::move(config)),
      set_(set),
      adapters_(std::make_unique<engine::AdapterRegistry>(config_.max_loras, config_.max_lora_rank, config_.lora_dtype)),
      last_used_(Clock::now()) {
  // Names and paths were checked with the config; an adapter's file is read on its first request.
  for (const auto& spec : config_.loras) {
    if (auto ok = adapters_->add(spec); !ok) std::fprintf(stderr, "tern serve: %s\n", ok.error().message.c_str());
  }
}

Result<std::shared_ptr<const model::LoraAdapter>> LocalModel::loaded_adapter(const std::string& name) const {
  std::shared_ptr<Loaded> loaded;
  {
    std::lock_guard lock(mutex_);
    loaded = loaded_;
  }
  if (!loaded) return fail("model '{}' is not loaded", config_.name);
  return adapters_->acquire(name, loaded->model().config());
}

LocalModel::~LocalModel() {
  stop();
  if (loader_.joinable()) loader_.join();
}

Result<std::unique_ptr<LocalModel::Loaded>> LocalModel::do_load() {
  const auto started = Clock::now();
  auto path = models::resolve_model(config_.model, {});
  if (!path) return fail("model '{}': {}", config_.name, path.error().message);
  std::optional<chat::ChatTemplate> chat_template;
  tool_calls::Format tool_format;
  engine::EngineStackOptions options;
  options.path = *path;
  options.threads = config_.threads;
  options.kv = {.context = config_.context, .default_context_cap = 8192,
                .memory_bytes = config_.kv_cache_memory > 0 ? config_.kv_cache_memory : engine::default_kv_memory_bytes()};
  options.check_model = [&](const model::Model& model) -> Result<void> {
    if (auto source = model::chat_template_source(model, config_.chat_template); source) {
      auto parsed = chat::ChatTemplate::parse(*source);
      if (!parsed) return fail("the chat template: {}", parsed.error().message);
      chat_template = std::move(*parsed);
      tool_format = tool_calls::detect_format(*source);
    } else if (!config_.chat_template.empty()) {
      return std::unexpected(source.error());
    } else {
      std::fprintf(stderr, "tern serve: %s has no chat template: chat requests to '%s' will answer 400 (set chat_template)\n",
                   model.file().name().c_str(), config_.name.c_str());
    }
    return {};
  };
  options.reserve = [&](int64_t bytes) -> Result<void> {
    if (set_.reserve(bytes, this)) return {};
    return fail("it needs {} MiB (weights + KV cache) and the memory budget of {} MiB is taken by models in use", bytes >> 20,
                set_.budget_bytes() >> 20);
  };
  engine::EngineConfig& engine_config = options.engine;
  engine_config.model_name = config_.name;
  engine_config.max_waiting = config_.max_waiting;
  engine_config.prefix_caching = config_.prefix_caching;
  engine_config.max_pinned_fraction = config_.kv_pin_fraction;
  engine_config.scheduler = config_.scheduler;
  engine_config.speculation = config_.speculation;
  if (!engine_config.speculation.draft_model.empty()) {
    auto draft = models::resolve_model(engine_config.speculation.draft_model, {});
    if (!draft) return fail("model '{}': draft model: {}", config_.name, draft.error().message);
    engine_config.speculation.draft_model = *draft;
  }
  engine_config.max_loras = config_.max_loras;
  options.kv_pin_quota_bytes = config_.kv_pin_quota;
  options.kv_disk_cache = config_.kv_disk_cache;
  options.kv_disk_bytes = config_.kv_disk_bytes;
  if (!config_.kv_events_endpoint.empty()) {
    auto publisher = observe::KvEventPublisher::start({.endpoint = config_.kv_events_endpoint, .pod = config_.kv_events_pod,
                                                       .model = config_.name, .block_size = engine_config.block_size,
                                                       .hash_seed = config_.kv_events_hash_seed});
    if (!publisher) return fail("model '{}': {}", config_.name, publisher.error().message);
    engine_config.kv_observer = *publisher;
  }
  auto stack = engine::build_engine_stack(std::move(options));
  if (!stack) return fail("model '{}': {}", config_.name, stack.error().message);
  auto loaded = std::make_unique<Loaded>();
  loaded->stack = std::move(*stack);
  const engine::EngineConfig& running = loaded->engine().config();
  if (const auto& store = running.kv_disk_store) {
    std::fprintf(stderr, "tern serve: model '%s': KV disk tier %s: %lld blocks (%lld MiB) already there, cap %lld MiB\n",
                 config_.name.c_str(), store->path().c_str(), static_cast<long long>(store->stats().blocks),
                 static_cast<long long>(store->stats().bytes >> 20), static_cast<long long>(config_.kv_disk_bytes >> 20));
  }
  const char* tool_syntax = chat_template ? tool_calls::family_name(tool_format.family) : "none";
  loaded->provider = std::make_unique<LocalProvider>(config_.name, loaded->model(), loaded->engine(), std::move(chat_template),
                                                    std::move(tool_format), adapters_.get());
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::fprintf(stderr,
               "tern serve: loaded model '%s' (%s, %s) in %.2f s: %d threads, context %lld, KV cache %lld tokens (%lld MiB), "
               "prefix caching %s, ITL target %s, speculation %s, tool calls %s\n",
               config_.name.c_str(), loaded->model().file().name().c_str(), loaded->model().config().arch_name.c_str(), seconds,
               loaded->stack->backend->num_threads(), static_cast<long long>(running.max_model_len),
               static_cast<long long>(running.num_kv_blocks * running.block_size), static_cast<long long>(loaded->stack->kv.bytes() >> 20),
               running.prefix_caching ? "on" : "off", engine::describe_itl_target(running.scheduler).c_str(),
               engine::describe_speculation(running.speculation).c_str(), tool_syntax);
  {
    std::lock_guard lock(mutex_);
    last_load_seconds_ = seconds;
    ++num_loads_;
  }
  return loaded;
}

Result<void> LocalModel::load() {
  auto loaded = do_load();
  if (!loaded) return std::unexpected(loaded.error());
  std::lock_guard lock(mutex_);
  loaded_ = std::move(*loaded);
  last_used_ = Clock::now();
  return {};
}

void LocalModel::load_in_background() {
  if (loader_.joinable()) loader_.join();  // the previous load's thread has finished (loading_ was false)
  loader_ = std::thread([this] {
    auto loaded = do_load();
    std::deque<std::shared_ptr<Pending>> waiting;
    std::shared_ptr<Loaded> now_loaded;
    {
      std::lock_guard lock(mutex_);
      loading_ = false;
      if (loaded && !stopped_) {
        loaded_ = std::move(*loaded);
        last_used_ = Clock::now();
      }
      now_loaded = loaded_;
      waiting.swap(pending_);
    }
    if (!loaded) std::fprintf(stderr, "tern serve: %s\n", loaded.error().message.c_str());
    for (auto& p : waiting) {
      p->start([&]() -> std::shared_ptr<Call> {
        if (!loaded) {
          p->sink(wire::final_error_event(wire::server_error(503, loaded.error().message, "model_load_failed")));
          return nullptr;
        }
        auto call = now_loaded ? now_loaded->provider->submit(p->request, p->sink)
                               : std::expected<std::shared_ptr<Call>, wire::ApiError>(std::unexpected(wire::server_error(503, "the server is stopping")));
        if (call) return *call;
        p->sink(wire::final_error_event(call.error()));
        return nullptr;
      });
    }
  });
}

std::expected<std::shared_ptr<Call>, wire::ApiError> LocalModel::submit(const wire::Request& request, wire::EventSink sink) {
  std::unique_lock lock(mutex_);
  last_used_ = Clock::now();
  if (stopped_) return std::unexpected(wire::server_error(503, "the server is shutting down", "shutting_down"));
  if (loaded_) {
    std::shared_ptr<Loaded> loaded = loaded_;
    lock.unlock();
    return loaded->provider->submit(request, std::move(sink));
  }
  auto pending = std::make_shared<Pending>();
  pending->request = request;
  pending->sink = std::move(sink);
  pending_.push_back(pending);
  if (!loading_) {
    loading_ = true;
    std::fprintf(stderr, "tern serve: loading model '%s' for a request (cold start)\n", config_.name.c_str());
    load_in_background();
  }
  return pending;
}

bool LocalModel::is_loaded() const {
  std::lock_guard lock(mutex_);
  return loaded_ != nullptr;
}

int64_t LocalModel::max_model_len() const {
  std::lock_guard lock(mutex_);
  return loaded_ ? loaded_->engine().config().max_model_len : 0;
}

std::string LocalModel::file_name() const {
  std::lock_guard lock(mutex_);
  return loaded_ ? loaded_->provider->file_name() : std::string();
}

int64_t LocalModel::resident_bytes() const {
  std::lock_guard lock(mutex_);
  return loaded_ ? loaded_->stack->resident_bytes : 0;
}

std::string LocalModel::metrics_text() const {
  std::lock_guard lock(mutex_);
  return loaded_ ? loaded_->engine().metrics().render() : std::string();
}

observe::EngineSample LocalModel::engine_sample() const {
  observe::EngineSample out;
  out.model = config_.name;
  std::lock_guard lock(mutex_);
  if (!loaded_) return out;
  const engine::Engine& engine = loaded_->engine();
  const engine::EngineSnapshot s = engine.metrics().snapshot();
  out.loaded = true;
  out.running = s.gauges.running;
  out.waiting = s.gauges.waiting;
  out.kv_usage = s.gauges.kv_usage;
  out.prefix_query_tokens = s.gauges.prefix_queries;
  out.prefix_hit_tokens = s.gauges.prefix_hits;
  out.disk_hit_tokens = s.gauges.disk_hit_tokens;
  out.pinned_hit_tokens = s.gauges.pins.refreshed * engine.config().block_size;  // each hit on a pinned block
  out.prompt_tokens = s.prompt_tokens;
  out.generation_tokens = s.generation_tokens;
  out.finished_requests = s.finished_requests;
  out.ttft = {.bounds = s.ttft.bounds(), .counts = s.ttft.counts()};
  out.itl = {.bounds = s.itl.bounds(), .counts = s.itl.counts()};
  return out;
}

double LocalModel::last_load_seconds() const {
  std::lock_guard lock(mutex_);
  return last_load_seconds_;
}

int64_t LocalModel::num_loads() const {
  std::lock_guard lock(mutex_);
  return num_loads_;
}

int64_t LocalModel::num_in_flight() const {
  std::lock_guard lock(mutex_);
  return (loaded_ ? loaded_->engine().num_in_flight() : 0) + static_cast<int64_t>(pending_.size());
}

void LocalModel::stop() {
  std::lock_guard lock(mutex_);
  stopped_ = true;
  if (loaded_) loaded_->engine().stop();
}

std::chrono::steady_clock::time_point LocalModel::last_used() const {
  std::lock_guard lock(mutex_);
  return last_used_;
}

bool LocalModel::unload_if_idle(Clock::time_point now, bool ignore_idle_time) {
  std::shared_ptr<Loaded> victim;
  {
    std::lock_guard lock(mutex_);
    if (!loaded_ || loading_ || loaded_->engine().num_in_flight() > 0) return false;
    if (!ignore_idle_time && (config_.idle_unload_s <= 0 || std::chrono::duration<double>(now - last_used_).count() < config_.idle_unload_s)) {
      return false;
    }
    victim = std::move(loaded_);
  }
  std::fprintf(stderr, "tern serve: unloaded model '%s' (%s)\n", config_.name.c_str(), ignore_idle_time ? "to make room" : "idle");
  return true;  // victim's engine stops and its memory is released here
}

LocalModelSet::LocalModelSet(int64_t memory_budget_bytes) : budget_bytes_(memory_budget_bytes), janitor_([this] { janitor(); }) {}

LocalModelSet::~LocalModelSet() {
  {
    std::lock_guard lock(janitor_mutex_);
    janitor_stop_ = true;
  }
  janitor_wake_.notify_all();
  janitor_.join();
}

std::shared_ptr<LocalModel> LocalModelSet::add(LocalModelConfig config) {
  models_.push_back(std::make_shared<LocalModel>(std::move(config), *this));
  return models_.back();
}

bool LocalModelSet::reserve(int64_t bytes, const LocalModel* for_model) {
  if (budget_bytes_ <= 0) return true;
  auto used = [&] {
    int64_t total = 0;
    for (const auto& m : models_) {
      if (m.get() != for_model) total += m->resident_bytes();
    }
    return total;
  };
  std::vector<LocalModel*> idle;
  for (const auto& m : models_) {
    if (m.get() != for_model) idle.push_back(m.get());
  }
  std::sort(idle.begin(), idle.end(), [](LocalModel* a, LocalModel* b) { return a->last_used() < b->last_used(); });
  for (LocalModel* m : idle) {
    if (used() + bytes <= budget_bytes_) break;
    m->unload_if_idle(Clock::now(), /*ignore_idle_time=*/true);
  }
  return used() + bytes <= budget_bytes_;
}

std::string LocalModelSet::metrics_text() const {
  std::vector<std::string> texts;
  for (const auto& m : models_) texts.push_back(m->metrics_text());
  std::string own;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    prometheus_header(own, name, type, help);
    for (const auto& m : models_) own += fmt::format("tern:{}{{model_name=\"{}\"}} {}\n", name, prometheus_label(m->config().name), value(*m));
  };
  family("model_loaded", "gauge", "1 while a local model is loaded.", [](const LocalModel& m) { return m.is_loaded() ? 1 : 0; });
  family("model_loads_total", "counter", "Loads of a local model (start and cold starts).", [](const LocalModel& m) { return m.num_loads(); });
  family("model_load_seconds", "gauge", "How long the last load of a local model took.", [](const LocalModel& m) { return m.last_load_seconds(); });
  family("model_resident_bytes", "gauge", "Weights and KV cache of a loaded local model.", [](const LocalModel& m) { return m.resident_bytes(); });
  return merge_families(texts) + own;
}

std::vector<observe::EngineSample> LocalModelSet::engine_samples() const {
  std::vector<observe::EngineSample> out;
  for (const auto& m : models_) out.push_back(m->engine_sample());
  return out;
}

void LocalModelSet::stop_all() {
  for (const auto& m : models_) m->stop();
}

void LocalModelSet::janitor() {
  std::unique_lock lock(janitor_mutex_);
  while (!janitor_stop_) {
    janitor_wake_.wait_for(lock, std::chrono::seconds(1));
    if (janitor_stop_) break;
    lock.unlock();
    for (const auto& m : models_) m->unload_if_idle(Clock::now(), false);
    lock.lock();
  }
}

}  // namespace tern::router
