#include "router/router.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <functional>
#include <random>
#include <thread>
#include <unordered_map>

#include "observe/kv_events.h"
#include "observe/trace.h"

namespace tern::router {
namespace {

using Clock = std::chrono::steady_clock;
using wire::ApiError;

constexpr double kEwmaWeight = 0.2;  // of the newest sample
constexpr std::chrono::milliseconds kBaseBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5'000};
// kv-events weighs a replica's work in prompt tokens of prefill (ModelRoute::decode_token_cost per
// output token); a request without max_tokens is taken to write 256.
constexpr int64_t kOutputTokensIfUnbounded = 256;

double ewma(double old_value, double sample) { return old_value == 0 ? sample : (1 - kEwmaWeight) * old_value + kEwmaWeight * sample; }

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

/// The backoff before retry number `attempt` (1, 2, ...): exponential with full jitter, or the
/// upstream's Retry-After (seconds) when it gave one, both capped.
std::chrono::milliseconds backoff(int attempt, const std::string& retry_after) {
  double seconds = 0;
  if (!retry_after.empty()) {
    auto [end, ec] = std::from_chars(retry_after.data(), retry_after.data() + retry_after.size(), seconds);
    if (ec == std::errc{} && seconds >= 0) {
      return std::min(kMaxBackoff, std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    }
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  const int64_t cap = std::min<int64_t>(kMaxBackoff.count(), kBaseBackoff.count() << std::min(attempt, 6));
  return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(cap / 2, cap)(rng));
}

}  // namespace

double call_cost_usd(const Prices& prices, const wire::Usage& usage) {
  // A deployment that states no cached or cache-write price bills those tokens as input; one that
  // states no 1-hour write price bills long writes as short ones.
  const double cache_write = prices.cache_write > 0 ? prices.cache_write : prices.input;
  const Prices resolved{.input = prices.input,
                        .cached_input = prices.cached_input > 0 ? prices.cached_input : prices.input,
                        .cache_write = cache_write,
                        .cache_write_1h = prices.cache_write_1h > 0 ? prices.cache_write_1h : cache_write,
                        .output = prices.output};
  return metering::token_cost_usd(resolved, usage);
}

std::string_view policy_name(Policy policy) {
  switch (policy) {
    case Policy::kPrice: return "price";
    case Policy::kLatency: return "latency";
    case Policy::kLeastOutstanding: return "least-outstanding";
    case Policy::kPrefixAffinity: return "prefix-affinity";
    case Policy::kRandom: return "random";
    case Policy::kKvEvents: return "kv-events";
  }
  return "?";
}

/// What one request adds to a deployment's queued work (policy kv-events; zero for the others).
struct Router::Charge {
  int64_t prefill_tokens = 0;  // prompt tokens it computes there: neither cached nor being computed
  int64_t decode_work = 0;     // its output, in prefill-token equivalents
  std::vector<uint64_t> blocks;  // the prompt's blocks it computes: counted as held there until its first token
};

struct Router::Candidate {
  Deployment* deployment;
  std::string model;  // the public name it answers for
  Charge charge;
};

struct Router::Deployment {
  DeploymentConfig config;
  std::shared_ptr<Provider> provider;
  std::atomic<int64_t> outstanding{0};
  std::atomic<int64_t> queued_work{0};  // Σ charges in flight: prefill until the first token, decode until the end

  mutable std::mutex mutex;  // guards everything below
  int64_t requests = 0;
  int64_t failures = 0;
  double ttft_ewma_s = 0;
  double itl_ewma_s = 0;
  std::deque<Clock::time_point> recent_failures;
  Clock::time_point open_until{};
  bool is_open = false;
  bool probe_in_flight = false;

  double total_price() const { return config.prices.input + config.prices.output; }

  /// Whether the breaker lets a request through now; a half-open breaker lets one probe through.
  bool admit() {
    std::lock_guard lock(mutex);
    if (!is_open) return true;
    if (Clock::now() < open_until || probe_in_flight) return false;
    probe_in_flight = true;
    return true;
  }

  void record_success() {
    std::lock_guard lock(mutex);
    ++requests;
    is_open = false;
    probe_in_flight = false;
    recent_failures.clear();
  }

  /// Returns whether this failure opened the breaker.
  bool record_failure() {
    std::lock_guard lock(mutex);
    const bool was_open = is_open;
    ++requests;
    ++failures;
    const auto now = Clock::now();
    recent_failures.push_back(now);
    while (!recent_failures.empty() && now - recent_failures.front() > config.breaker.window) recent_failures.pop_front();
    if (probe_in_flight || static_cast<int>(recent_failures.size()) >= config.breaker.failures_to_open) {
      is_open = true;
      probe_in_flight = false;
      open_until = now + config.breaker.open_for;
    }
    return is_open && !was_open;
  }

  void record_latency(double ttft_s, double itl_s) {
    std::lock_guard lock(mutex);
    if (ttft_s > 0) ttft_ewma_s = ewma(ttft_ewma_s, ttft_s);
    if (itl_s > 0) itl_ewma_s = ewma(itl_ewma_s, itl_s);
  }

  double ttft() const {
    std::lock_guard lock(mutex);
    return ttft_ewma_s;
  }
  double itl() const {
    std::lock_guard lock(mutex);
    return itl_ewma_s;
  }

  /// Blocks whose prefill runs here now: the replica has not announced them (it does once they are
  /// computed), but a request sharing them is best sent here too rather than computing them twice.
  void add_pending(const std::vector<uint64_t>& blocks, int delta) {
    std::lock_guard lock(mutex);
    for (uint64_t block : blocks) {
      if ((pending_blocks[block] += delta) <= 0) pending_blocks.erase(block);
    }
  }
  /// How many of `chain`'s blocks from `from` on are pending here, in a row.
  int64_t pending_run(const std::vector<uint64_t>& chain, size_t from) const {
    std::lock_guard lock(mutex);
    size_t end = from;
    while (end < chain.size() && pending_blocks.contains(chain[end])) ++end;
    return static_cast<int64_t>(end - from);
  }

 private:
  std::unordered_map<uint64_t, int> pending_blocks;  // guarded by mutex
};

struct Router::ModelRoute {
  std::string name;
  std::string parent;
  std::vector<std::string> aliases;
  std::vector<Deployment*> deployments;
  Policy policy = Policy::kPrice;
  int64_t max_model_len = 0;
  std::shared_ptr<const PromptEncoder> encoder;  // the kv-events policy: the prompt as its replicas tokenize it
  double decode_token_cost = kDefaultDecodeTokenCost;  // kv-events: an output token in prompt tokens of prefill
};

struct Router::Timers {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};

  ~Timers() {
    guard.reset();
    io.stop();
    thread.join();
  }

  void after(std::chrono::milliseconds delay, std::function<void()> work) {
    auto timer = std::make_shared<boost::asio::steady_timer>(io, delay);
    timer->async_wait([timer, work = std::move(work)](boost::system::error_code ec) {
      if (!ec) work();
    });
  }
};

/// One client request across its candidates: the retries, the fallbacks, and the event stream it
/// commits to once the first event has gone to the client.
class Router::Attempt : public Call, public std::enable_shared_from_this<Attempt> {
 public:
  Attempt(Router& router, wire::Request request, wire::EventSink sink, std::vector<Candidate> candidates)
      : router_(router), request_(std::move(request)), sink_(std::move(sink)), candidates_(std::move(candidates)) {}

  /// The attempt keeps itself alive until its last event went out (a cancelled call still reports
  /// the usage it consumed, which the ledger records) — not only while its client is connected.
  void hold_until_finished(std::shared_ptr<Attempt> self) {
    std::lock_guard lock(mutex_);
    keep_alive_ = std::move(self);
  }

  /// Tries candidates until one starts, or a retry is scheduled. An error: nothing started or pending.
  std::optional<ApiError> launch() {
    std::shared_ptr<Attempt> released;  // destroyed after the lock
    std::unique_lock lock(mutex_);
    while (index_ < candidates_.size()) {
      if (cancelled_) {
        released = std::move(keep_alive_);  // cancelled between tries: no event will come
        return std::nullopt;
      }
      Deployment& d = *candidates_[index_].deployment;
      if (trace_ && index_ > 0 && tries_ == 0) {
        trace_->add("fallback", {{"from", candidates_[index_ - 1].deployment->config.name}, {"to", d.config.name}});
      }
      const bool breaker_lets_through = d.admit();
      if (!breaker_lets_through || (d.config.max_concurrency > 0 && d.outstanding.load() >= d.config.max_concurrency)) {
        last_error_ = wire::server_error(d.config.max_concurrency > 0 ? 429 : 503,
                                        fmt::format("deployment '{}' is unavailable (circuit open or at its concurrency limit)", d.config.name),
                                        "unavailable", true);
        if (trace_) {
          trace_->add("deployment_skipped", {{"deployment", d.config.name},
                                             {"reason", breaker_lets_through ? "at its concurrency limit" : "circuit breaker open"}});
        }
        ++index_;
        tries_ = 0;
        continue;
      }
      charge(d);
      const uint64_t generation = ++generation_;
      started_at_ = Clock::now();
      std::weak_ptr<Attempt> weak = shared_from_this();
      auto sink = [weak, generation](wire::Event&& event) {
        if (auto self = weak.lock()) self->on_event(generation, std::move(event));
      };
      lock.unlock();
      auto call = d.provider->submit(request_, std::move(sink));
      lock.lock();
      if (call) {
        call_ = std::move(*call);
        if (cancelled_) call_->cancel();
        return std::nullopt;
      }
      discharge(d);
      trace_attempt(d, call.error().status, call.error().message);
      if (!call.error().is_retryable) {
        d.record_success();  // the deployment answered; the request was at fault
        released = std::move(keep_alive_);
        return call.error();
      }
      record_failure(d);
      last_error_ = call.error();
      if (schedule_retry_locked()) return std::nullopt;
    }
    released = std::move(keep_alive_);
    return last_error_.value_or(wire::server_error(503, "no deployment could take the request", "unavailable"));
  }

  void cancel() override {
    std::shared_ptr<Call> call;
    {
      std::lock_guard lock(mutex_);
      cancelled_ = true;
      call = call_;
    }
    if (call) call->cancel();
  }

 private:
  /// After a retryable failure: retry the same deployment after a backoff, or move on to the next.
  /// Returns whether a retry was scheduled (else the loop in launch() goes on with the next).
  bool schedule_retry_locked() {
    Deployment& d = *candidates_[index_].deployment;
    if (tries_ < d.config.retries) {
      ++tries_;
      std::weak_ptr<Attempt> weak = shared_from_this();
      const auto delay = backoff(tries_, last_error_->retry_after);
      if (trace_) trace_->add("retry_scheduled", {{"deployment", d.config.name}, {"retry", tries_}, {"backoff_ms", delay.count()}});
      router_.timers_->after(delay, [weak] {
        if (auto self = weak.lock()) self->relaunch();
      });
      return true;
    }
    ++index_;
    tries_ = 0;
    return false;
  }

  /// From the timer thread, or a provider thread after an asynchronous failure.
  void relaunch() {
    if (auto error = launch()) {
      wire::Event last;
      last.finished = true;
      last.finish_reason = "error";
      last.error = std::move(*error);
      deliver(std::move(last));
    }
  }

  /// One try on a deployment, from its start to its end, in the request's trace.
  void trace_attempt(const Deployment& d, int status, const std::string& error, const std::string& finish_reason = {}) {
    if (!trace_) return;
    nlohmann::json attributes = {{"deployment", d.config.name}, {"kind", d.config.kind}, {"try", tries_ + 1}, {"status", status}};
    if (d.config.kind != "local") attributes["gen_ai.provider.name"] = d.config.kind;
    if (!error.empty()) attributes["error"] = error;
    if (!finish_reason.empty()) attributes["finish_reason"] = finish_reason;
    trace_->add("upstream_attempt", std::move(attributes), started_at_, std::chrono::duration<double, std::milli>(Clock::now() - started_at_).count());
  }

  /// A try starts on `d` (the current candidate): its request counts there until it ends.
  void charge(Deployment& d) {
    const Charge& c = candidates_[index_].charge;
    d.outstanding.fetch_add(1);
    d.queued_work.fetch_add(c.prefill_tokens + c.decode_work);
    if (!c.blocks.empty()) d.add_pending(c.blocks, +1);
    prefill_charged_ = true;
  }
  /// The try's first event: the prompt is computed (and its blocks announced).
  void discharge_prefill(Deployment& d) {
    if (!prefill_charged_) return;
    prefill_charged_ = false;
    const Charge& c = candidates_[index_].charge;
    d.queued_work.fetch_sub(c.prefill_tokens);
    if (!c.blocks.empty()) d.add_pending(c.blocks, -1);
  }
  /// The try ended, however.
  void discharge(Deployment& d) {
    discharge_prefill(d);
    d.queued_work.fetch_sub(candidates_[index_].charge.decode_work);
    d.outstanding.fetch_sub(1);
  }

  void record_failure(Deployment& d) {
    if (d.record_failure() && trace_) trace_->add("breaker_opened", {{"deployment", d.config.name}});
  }

  void deliver(wire::Event&& event) {
    std::shared_ptr<Attempt> released;  // the caller holds another reference
    {
      std::lock_guard lock(mutex_);
      // After a cancel only the last event goes on: it carries the usage the ledger records.
      if (delivered_final_ || (cancelled_ && !event.finished)) return;
      if (event.finished) {
        delivered_final_ = true;
        released = std::move(keep_alive_);
      }
    }
    sink_(std::move(event));
  }

  void on_event(uint64_t generation, wire::Event&& event) {
    std::unique_lock lock(mutex_);
    if (generation != generation_ || index_ >= candidates_.size()) return;
    Deployment& d = *candidates_[index_].deployment;
    const auto now = Clock::now();
    if (!committed_) {
      if (event.finished && event.error && event.error->is_retryable && event.text.empty() && !cancelled_) {
        // Failed before anything reached the client: retry or fall back.
        discharge(d);
        trace_attempt(d, event.error->status, event.error->message);
        record_failure(d);
        last_error_ = std::move(event.error);
        call_.reset();
        const bool scheduled = schedule_retry_locked();
        lock.unlock();
        if (!scheduled) relaunch();
        return;
      }
      committed_ = true;
      first_event_at_ = now;
      discharge_prefill(d);
    }
    if (!event.text.empty()) ++num_text_events_;
    if (event.finished) {
      discharge(d);
      trace_attempt(d, event.error ? event.error->status : 200, event.error ? event.error->message : std::string(), event.finish_reason);
      if (event.error && event.error->status >= 500) record_failure(d);
      else d.record_success();
      const double ttft = std::chrono::duration<double>(first_event_at_ - started_at_).count();
      const double itl = num_text_events_ > 1 ? std::chrono::duration<double>(now - first_event_at_).count() / (num_text_events_ - 1) : 0;
      d.record_latency(ttft, itl);
      event.usage.cost_usd = call_cost_usd(d.config.prices, event.usage);
    }
    event.model = candidates_[index_].model;
    event.deployment = d.config.name;
    if (auto region = d.config.labels.find("region"); region != d.config.labels.end()) event.region = region->second;
    lock.unlock();
    deliver(std::move(event));
  }

  Router& router_;
  wire::Request request_;
  std::shared_ptr<observe::Trace> trace_ = request_.trace;  // may be null
  wire::EventSink sink_;
  std::vector<Candidate> candidates_;

  std::mutex mutex_;
  size_t index_ = 0;
  int tries_ = 0;
  uint64_t generation_ = 0;  // events of an abandoned try are ignored
  bool prefill_charged_ = false;  // the current try's prefill still counts on its deployment
  std::shared_ptr<Call> call_;
  std::optional<ApiError> last_error_;
  bool committed_ = false;
  bool cancelled_ = false;
  bool delivered_final_ = false;
  std::shared_ptr<Attempt> keep_alive_;  // until the last event was delivered
  Clock::time_point started_at_{};
  Clock::time_point first_event_at_{};
  int64_t num_text_events_ = 0;
};

Router::Router() : timers_(std::make_unique<Timers>()) {}
Router::~Router() = default;

void Router::add_deployment(DeploymentConfig config, std::shared_ptr<Provider> provider) {
  std::unique_lock table(table_mutex_);
  auto d = std::make_unique<Deployment>();
  d->config = std::move(config);
  d->provider = std::move(provider);
  const std::string name = d->config.name;
  deployments_[name] = std::move(d);
}

void Router::add_model(std::string name, std::vector<std::string> deployments, Policy policy, std::vector<std::string> aliases,
                       int64_t max_model_len, std::string parent) {
  std::unique_lock table(table_mutex_);
  auto route = std::make_shared<ModelRoute>();
  route->name = name;
  route->parent = std::move(parent);
  route->policy = policy;
  route->max_model_len = max_model_len;
  for (const auto& d : deployments) {
    auto it = deployments_.find(d);
    if (it != deployments_.end()) route->deployments.push_back(it->second.get());
  }
  models_[name] = route;
  for (auto& alias : aliases) {
    if (models_.emplace(alias, route).second) route->aliases.push_back(std::move(alias));
  }
  model_list_.push_back(std::move(route));
}

void Router::set_kv_index(std::shared_ptr<const observe::KvBlockIndex> index, std::string hash_seed) {
  std::unique_lock table(table_mutex_);
  kv_index_ = std::move(index);
  kv_root_hash_ = observe::kv_event_root_hash(hash_seed);
}

bool Router::set_prompt_encoder(const std::string& model, std::shared_ptr<const PromptEncoder> encoder, double decode_token_cost) {
  std::unique_lock table(table_mutex_);
  auto it = models_.find(model);
  if (it == models_.end()) return false;
  it->second->encoder = std::move(encoder);
  it->second->decode_token_cost = decode_token_cost;
  return true;
}

bool Router::add_unlisted_alias(const std::string& model, const std::string& alias) {
  std::unique_lock table(table_mutex_);
  auto it = models_.find(model);
  if (it == models_.end()) return false;
  return models_.emplace(alias, it->second).second;
}

bool Router::remove_model(const std::string& name) {
  std::unique_lock table(table_mutex_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second->name != name) return false;
  const std::shared_ptr<ModelRoute> route = it->second;
  std::erase_if(models_, [&](const auto& entry) { return entry.second == route; });  // and its aliases
  std::erase(model_list_, route);
  return true;
}

bool Router::has_model(const std::string& name) const {
  std::shared_lock table(table_mutex_);
  return models_.contains(name);
}

bool Router::has_deployment(const std::string& name) const {
  std::shared_lock table(table_mutex_);
  return deployments_.contains(name);
}

std::vector<ModelInfo> Router::models() const {
  std::shared_lock table(table_mutex_);
  std::vector<ModelInfo> out;
  for (const auto& route : model_list_) {
    ModelInfo info{.name = route->name, .deployments = {}, .max_model_len = route->max_model_len, .parent = route->parent,
                   .aliases = route->aliases};
    for (const Deployment* d : route->deployments) info.deployments.push_back(d->config.name);
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<DeploymentStats> Router::stats() const {
  std::shared_lock table(table_mutex_);
  std::vector<DeploymentStats> out;
  for (const auto& [name, d] : deployments_) {
    std::lock_guard lock(d->mutex);
    const bool half_open = d->is_open && Clock::now() >= d->open_until;
    out.push_back({.name = name, .kind = d->config.kind, .outstanding = d->outstanding.load(),
                   .queued_work = d->queued_work.load(), .requests = d->requests,
                   .failures = d->failures, .ttft_ewma_s = d->ttft_ewma_s, .itl_ewma_s = d->itl_ewma_s,
                   .breaker = !d->is_open ? "closed" : half_open ? "half_open" : "open"});
  }
  return out;
}

int64_t Router::num_in_flight() const {
  std::shared_lock table(table_mutex_);
  int64_t total = 0;
  for (const auto& [name, d] : deployments_) total += d->provider->num_in_flight();
  return total;
}

void Router::stop_all() {
  std::shared_lock table(table_mutex_);
  for (const auto& [name, d] : deployments_) d->provider->stop();
}

bool placement_allows(const wire::PlacementPolicy& policy, const DeploymentConfig& deployment, std::string* why) {
  auto refuse = [&](std::string reason) {
    if (why != nullptr) *why = std::move(reason);
    return false;
  };
  // A LoRA adapter runs on its local base model's engine.
  const bool is_remote = deployment.kind != "local" && deployment.kind != "lora";
  if (policy.never_remote && is_remote) return refuse(fmt::format("'{}' is remote ({})", deployment.name, deployment.kind));
  const auto region = deployment.labels.find("region");
  if (!policy.regions.empty() && (region == deployment.labels.end() || !contains(policy.regions, region->second))) {
    return refuse(fmt::format("'{}' is in {}", deployment.name, region == deployment.labels.end() ? "no stated region" : "region " + region->second));
  }
  for (const auto& [key, value] : policy.labels) {
    const auto it = deployment.labels.find(key);
    if (it == deployment.labels.end() || it->second != value) {
      return refuse(fmt::format("'{}' has {}", deployment.name, it == deployment.labels.end() ? "no " + key + " label" : key + "=" + it->second));
    }
  }
  return true;
}

std::string describe_placement(const wire::PlacementPolicy& policy) {
  std::vector<std::string> parts;
  if (!policy.regions.empty()) parts.push_back(fmt::format("regions {}", fmt::join(policy.regions, ", ")));
  if (!policy.labels.empty()) {
    std::vector<std::string> labels;
    for (const auto& [key, value] : policy.labels) labels.push_back(key + "=" + value);
    parts.push_back(fmt::format("labels {}", fmt::join(labels, ", ")));
  }
  if (policy.never_remote) parts.push_back("never remote");
  return parts.empty() ? std::string("no constraint") : fmt::format("{}", fmt::join(parts, "; "));
}

std::vector<Router::Candidate> Router::candidates(const wire::Request& request, ApiError& why_none, bool ordered) const {
  const wire::ProviderPreferences& prefs = request.provider;
  std::vector<std::string> names{request.model};
  names.insert(names.end(), request.fallback_models.begin(), request.fallback_models.end());
  std::vector<Candidate> out;
  std::optional<ApiError> unknown;  // the first name that does not exist
  bool any_known = false;
  std::string placement_refusal;  // the first deployment a placement policy refused, and why
  std::shared_lock table(table_mutex_);  // deployments are never removed: their pointers outlive it
  for (size_t n = 0; n < names.size(); ++n) {
    auto route_it = models_.find(names[n]);
    if (route_it == models_.end()) {
      // As OpenRouter's `models`: a name that cannot answer is passed over for the next one; only a
      // list of which none exists is refused (below).
      if (!unknown) {
        unknown = ApiError{.status = 404, .message = fmt::format("the model '{}' does not exist", names[n]), .type = "invalid_request_error",
                           .param = n == 0 ? "model" : "models", .code = "model_not_found", .is_retryable = false, .retry_after = {}};
      }
      continue;
    }
    any_known = true;
    const ModelRoute& route = *route_it->second;
    std::vector<Deployment*> list;
    for (Deployment* d : route.deployments) {
      const std::string& name = d->config.name;
      if (!prefs.only.empty() && !contains(prefs.only, name)) continue;
      if (contains(prefs.ignore, name)) continue;
      if (prefs.max_prompt_price && d->config.prices.input > *prefs.max_prompt_price) continue;
      if (prefs.max_completion_price && d->config.prices.output > *prefs.max_completion_price) continue;
      // The tenant's placement policies: never outside them, also not as a fallback.
      const wire::PlacementPolicy* refused_by = nullptr;
      std::string why;
      for (const wire::PlacementPolicy& policy : request.placement) {
        if (!placement_allows(policy, d->config, &why)) {
          refused_by = &policy;
          break;
        }
      }
      if (refused_by != nullptr) {
        if (placement_refusal.empty()) {
          placement_refusal = fmt::format("{}'s placement policy ({}) refuses deployment {}", refused_by->owner, describe_placement(*refused_by), why);
        }
        continue;
      }
      list.push_back(d);
    }
    if (!ordered && prefs.allow_fallbacks) {
      // The caller needs the set, not the order: no policy work (kv-events tokenizes the prompt).
      for (Deployment* d : list) out.push_back({.deployment = d, .model = route.name, .charge = {}});
      continue;
    }
    // The model's policy, then provider.sort over it, then provider.order over that (stable sorts).
    const std::string sort = prefs.sort.empty() ? std::string(policy_name(route.policy)) : prefs.sort;
    std::map<const Deployment*, Charge> charges;  // kv-events: what the request costs each deployment
    if (sort == "price") {
      std::stable_sort(list.begin(), list.end(), [](Deployment* a, Deployment* b) { return a->total_price() < b->total_price(); });
    } else if (sort == "latency") {
      std::stable_sort(list.begin(), list.end(), [](Deployment* a, Deployment* b) { return a->ttft() < b->ttft(); });
    } else if (sort == "throughput") {
      std::stable_sort(list.begin(), list.end(), [](Deployment* a, Deployment* b) { return a->itl() < b->itl(); });
    } else if (sort == "least-outstanding") {
      std::stable_sort(list.begin(), list.end(), [](Deployment* a, Deployment* b) { return a->outstanding.load() < b->outstanding.load(); });
    } else if ((sort == "prefix-affinity" || sort == "kv-events" || sort == "random") && !list.empty()) {
      if (sort == "random") {
        thread_local std::mt19937_64 rng{std::random_device{}()};
        std::shuffle(list.begin(), list.end(), rng);
      } else {
        charges = order_by_prefix(request, route, sort == "kv-events", list);
      }
      if (charges.empty()) {
        // The load bound: a deployment loaded well above the mean goes after the others. (kv-events
        // with the prompt's tokens weighed the load against the prefill a move costs instead.)
        double mean = 0;
        for (Deployment* d : list) mean += static_cast<double>(d->outstanding.load());
        mean /= static_cast<double>(list.size());
        std::stable_partition(list.begin(), list.end(), [&](Deployment* d) { return d->outstanding.load() <= 1.25 * mean + 1; });
      }
    }
    if (!prefs.order.empty()) {
      auto rank = [&](Deployment* d) {
        auto it = std::find(prefs.order.begin(), prefs.order.end(), d->config.name);
        return it == prefs.order.end() ? prefs.order.size() : static_cast<size_t>(it - prefs.order.begin());
      };
      std::stable_sort(list.begin(), list.end(), [&](Deployment* a, Deployment* b) { return rank(a) < rank(b); });
    }
    // Deployments failing their health check go last: tried only when every healthy one failed.
    std::stable_partition(list.begin(), list.end(), [](Deployment* d) { return d->provider->is_healthy(); });
    for (Deployment* d : list) {
      auto charge = charges.find(d);
      out.push_back({.deployment = d, .model = route.name, .charge = charge == charges.end() ? Charge{} : std::move(charge->second)});
    }
  }
  if (!prefs.allow_fallbacks && out.size() > 1) out.resize(1);
  if (out.empty() && unknown && !any_known) {
    why_none = *unknown;
  } else if (out.empty() && !placement_refusal.empty()) {
    why_none = {.status = 403, .message = fmt::format("no deployment of '{}' is allowed for this caller: {}", request.model, placement_refusal),
                .type = "permission_error", .param = "model", .code = "placement_policy", .is_retryable = false, .retry_after = {}};
  } else if (out.empty()) {
    why_none = {.status = 404, .message = fmt::format("no deployment of '{}' matches the request's provider preferences", request.model),
                .type = "invalid_request_error", .param = "provider", .code = "no_deployment", .is_retryable = false, .retry_after = {}};
  }
  return out;
}

std::map<const Router::Deployment*, Router::Charge> Router::order_by_prefix(const wire::Request& request, const ModelRoute& route,
                                                                        bool use_kv_events, std::vector<Deployment*>& list) const {
  // Rendezvous hashing of the prompt's start: a repeated prefix lands on the same deployment (whose
  // prefix cache has it). OpenAI's prompt_cache_key, when given, groups requests instead of their
  // first bytes. For kv-events this only breaks ties (between replicas with as much work ahead).
  const std::string text = !request.prompt_cache_key.empty() ? "key:" + request.prompt_cache_key
                           : request.kind == wire::RequestKind::kChat ? request.messages.dump()
                                                                     : request.prompt.value_or("");
  const std::string_view prefix = std::string_view(text).substr(0, 256);
  std::map<const Deployment*, uint64_t> rendezvous;
  for (Deployment* d : list) rendezvous[d] = std::hash<std::string>{}(std::string(prefix) + '\0' + d->config.name);
  std::optional<std::vector<int32_t>> tokens;
  if (use_kv_events && route.encoder && kv_index_) {
    if (auto encoded = route.encoder->encode(request)) tokens = std::move(*encoded);
  }
  if (!tokens) {
    // kv-events without the prompt's tokens (no index, a prompt its encoder refuses): the least
    // loaded, as a prompt that no replica holds.
    std::map<const Deployment*, int64_t> load;  // a snapshot: the sort needs a fixed order; prefix-affinity leaves it empty (0)
    if (use_kv_events) {
      for (Deployment* d : list) load[d] = d->outstanding.load();
    }
    std::stable_sort(list.begin(), list.end(), [&](Deployment* a, Deployment* b) {
      if (load[a] != load[b]) return load[a] < load[b];
      return rendezvous[a] > rendezvous[b];
    });
    return {};
  }
  // kv-events: each replica's cost of taking the request is the work already queued there plus twice
  // the prompt tokens it would compute (those it neither holds, by its events, nor is computing for
  // an earlier request): once for the compute, once for the cache room the copy takes from other
  // prompts, which return as misses. The least goes first. A cached prompt thus stays with its holder
  // until the holder's queue outweighs recomputing it elsewhere twice over; a new prompt goes where
  // the least work waits. (A bare count bound spilled popular prompts onto the second replica, and
  // the duplicates evicted others: measured in docs/benchmarks.md.)
  const int64_t output_tokens = std::max<int64_t>(1, request.max_tokens.value_or(kOutputTokensIfUnbounded));
  const int64_t prompt_tokens = static_cast<int64_t>(tokens->size());
  std::map<int64_t, std::vector<uint64_t>> chains;  // by block size (replicas may differ)
  std::map<const Deployment*, Charge> charges;
  std::map<const Deployment*, int64_t> score;
  for (Deployment* d : list) {
    Charge& charge = charges[d];
    int64_t held_tokens = 0;
    const int64_t block_size = d->config.kv_source.empty() ? 0 : kv_index_->block_size(d->config.kv_source);
    if (block_size > 0) {
      auto chain = chains.find(block_size);
      if (chain == chains.end()) chain = chains.emplace(block_size, observe::kv_event_block_chain(*tokens, block_size, kv_root_hash_)).first;
      const auto held = static_cast<size_t>(kv_index_->matched_blocks(d->config.kv_source, chain->second));
      const auto computing = static_cast<size_t>(d->pending_run(chain->second, held));
      held_tokens = static_cast<int64_t>(held + computing) * block_size;
      charge.blocks.assign(chain->second.begin() + static_cast<ptrdiff_t>(held + computing), chain->second.end());
    }
    charge.prefill_tokens = std::max<int64_t>(0, prompt_tokens - held_tokens);
    charge.decode_work = static_cast<int64_t>(static_cast<double>(output_tokens) * route.decode_token_cost);
    score[d] = d->queued_work.load() + 2 * charge.prefill_tokens;
  }
  std::stable_sort(list.begin(), list.end(), [&](Deployment* a, Deployment* b) {
    if (score[a] != score[b]) return score[a] < score[b];
    return rendezvous[a] > rendezvous[b];
  });
  return charges;
}

double Router::max_cost_usd(const wire::Request& request, int64_t prompt_tokens, int64_t completion_tokens) const {
  ApiError ignored;
  double most = 0;
  const wire::Usage usage{.prompt_tokens = prompt_tokens, .completion_tokens = completion_tokens, .cached_tokens = 0,
                         .cache_write_tokens = 0, .cost_usd = std::nullopt};
  for (const Candidate& c : candidates(request, ignored, /*ordered=*/false)) most = std::max(most, call_cost_usd(c.deployment->config.prices, usage));
  return most;
}

std::expected<std::shared_ptr<Call>, ApiError> Router::submit(const wire::Request& request, wire::EventSink sink) {
  ApiError why_none;
  auto list = candidates(request, why_none);
  if (list.empty()) return std::unexpected(why_none);
  auto attempt = std::make_shared<Attempt>(*this, request, std::move(sink), std::move(list));
  attempt->hold_until_finished(attempt);
  if (auto error = attempt->launch()) return std::unexpected(*error);
  return attempt;
}

}  // namespace tern::router
