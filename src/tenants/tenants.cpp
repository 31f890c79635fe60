#include "tenants/tenants.h"

#include <openssl/crypto.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "util/prometheus.h"
#include "util/clock.h"
#include "util/sha256.h"

namespace tern::tenants {

namespace {

/// "6m0s", "1s", "120ms" as OpenAI writes its x-ratelimit-reset-* headers.
std::string reset_text(double seconds) {
  if (seconds < 1) return fmt::format("{}ms", std::max(0, static_cast<int>(std::ceil(seconds * 1000))));
  const int64_t whole = static_cast<int64_t>(std::ceil(seconds));
  if (whole < 60) return fmt::format("{}s", whole);
  return fmt::format("{}m{}s", whole / 60, whole % 60);
}

/// A per-minute limit (requests or tokens) as a token bucket: `level` units available now, at most
/// `per_minute`, refilled at per_minute / 60 a second; below zero after an overrun. A limit of 0 is
/// no limit: the bucket is never consulted.
struct MinuteBucket {
  double level = 0;

  static double rate(int64_t per_minute) { return static_cast<double>(per_minute) / 60; }
  void refill(int64_t per_minute, double elapsed_s) {
    if (per_minute > 0) level = std::min<double>(static_cast<double>(per_minute), level + elapsed_s * rate(per_minute));
  }
  /// Seconds until `amount` units are available.
  double seconds_until(int64_t per_minute, double amount) const { return (amount - level) / rate(per_minute); }
  /// Units handed back (a settled reservation), never past the capacity.
  void give_back(int64_t per_minute, double amount) {
    if (per_minute > 0) level = std::min<double>(level + amount, static_cast<double>(per_minute));
  }
  /// The limit changed: a limit newly set starts full; a changed one keeps what is left, capped.
  void resize(int64_t old_per_minute, int64_t new_per_minute) {
    if (new_per_minute == old_per_minute) return;
    level = old_per_minute == 0 ? static_cast<double>(new_per_minute) : std::min<double>(level, static_cast<double>(new_per_minute));
  }
  /// x-ratelimit-limit-<unit>, -remaining-<unit>, -reset-<unit> (OpenAI's names).
  void add_headers(Headers& out, const char* unit, int64_t per_minute) const {
    if (per_minute <= 0) return;
    out.emplace_back(fmt::format("x-ratelimit-limit-{}", unit), std::to_string(per_minute));
    out.emplace_back(fmt::format("x-ratelimit-remaining-{}", unit), std::to_string(std::max<int64_t>(0, static_cast<int64_t>(level))));
    out.emplace_back(fmt::format("x-ratelimit-reset-{}", unit), reset_text(seconds_until(per_minute, static_cast<double>(per_minute))));
  }
};

}  // namespace

/// One key's live state: its record, token buckets, in-flight count and spend this period.
struct KeyState {
  std::mutex mutex;
  ApiKey key;
  MinuteBucket requests;  // capacity rpm
  MinuteBucket tokens;    // capacity tpm
  int64_t refilled_ms = 0;
  int64_t in_flight = 0;
  double spent_usd = 0;       // this period, settled requests
  double reserved_usd = 0;    // estimated cost of requests in flight
  int64_t period_start = 0;
};

namespace {

/// Tops the buckets up for the time passed and starts a new budget period when one began.
void refresh(KeyState& s, int64_t now) {
  const double elapsed_s = std::max<int64_t>(0, now - s.refilled_ms) / 1000.0;
  s.refilled_ms = now;
  const KeyLimits& l = s.key.limits;
  s.requests.refill(l.rpm, elapsed_s);
  s.tokens.refill(l.tpm, elapsed_s);
  const int64_t period = period_start_ms(l.budget_period, now);
  if (period != s.period_start) {
    s.period_start = period;
    s.spent_usd = 0;
  }
}

Headers limit_headers(const KeyState& s) {
  Headers out;
  s.requests.add_headers(out, "requests", s.key.limits.rpm);
  s.tokens.add_headers(out, "tokens", s.key.limits.tpm);
  return out;
}

}  // namespace

int64_t period_start_ms(BudgetPeriod period, int64_t now) {
  const std::time_t seconds = static_cast<std::time_t>(now / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  if (period == BudgetPeriod::kWeek) tm.tm_mday -= (tm.tm_wday + 6) % 7;  // back to Monday
  if (period == BudgetPeriod::kMonth) tm.tm_mday = 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

int64_t period_end_ms(BudgetPeriod period, int64_t start_ms) {
  if (period == BudgetPeriod::kDay) return start_ms + 86'400'000;
  if (period == BudgetPeriod::kWeek) return start_ms + 7 * 86'400'000LL;
  const std::time_t seconds = static_cast<std::time_t>(start_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  tm.tm_mon += 1;  // timegm normalises December + 1 into January of the next year
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

Admission::Admission(std::shared_ptr<KeyState> state, int64_t reserved_tokens, double reserved_cost, Headers headers)
    : state_(std::move(state)), reserved_tokens_(reserved_tokens), reserved_cost_(reserved_cost), headers_(std::move(headers)) {}

Admission::~Admission() {
  if (!settled_) settle(0, 0);
}

void Admission::settle(int64_t tokens_used, double cost_usd) {
  if (settled_) return;
  settled_ = true;
  std::lock_guard lock(state_->mutex);
  refresh(*state_, unix_ms());
  state_->tokens.give_back(state_->key.limits.tpm, static_cast<double>(reserved_tokens_ - tokens_used));
  state_->in_flight -= 1;
  state_->reserved_usd = std::max(0.0, state_->reserved_usd - reserved_cost_);
  state_->spent_usd += cost_usd;
}

Tenants::Tenants(std::unique_ptr<KeyStore> keys, SpendSource spend_source, TenantOptions options)
    : keys_(std::move(keys)), spend_source_(std::move(spend_source)), options_(options) {}

Tenants::~Tenants() = default;

bool Tenants::auth_required() const {
  std::shared_lock lock(states_mutex_);
  return any_usable_;
}

void Tenants::reload_if_changed() {
  std::lock_guard lock(reload_mutex_);
  if (keys_->data_version() == data_version_) return;
  if (auto ok = reload_locked(); !ok) std::fprintf(stderr, "tern serve: keys: %s\n", ok.error().message.c_str());
}

Result<void> Tenants::load() {
  std::lock_guard lock(reload_mutex_);
  return reload_locked();
}

Result<double> Tenants::spend_since(const std::string& key_id, int64_t since_ms) const {
  if (!spend_source_) return 0.0;
  auto spent = spend_source_(key_id, since_ms);
  if (!spent) return fail("reading {}'s spend from the ledger: {}", key_id, spent.error().message);
  return spent;
}

Result<void> Tenants::reload_locked() {
  // One reload at a time (the key watcher and the admin API both reload): a stale list applied after
  // a fresh one would bring a revoked key back.
  data_version_ = keys_->data_version();
  auto keys = keys_->list();
  if (!keys) return std::unexpected(keys.error());
  const int64_t now = unix_ms();
  for (const ApiKey& key : *keys) {
    if (auto existing = state_of(key.id)) {
      // A new budget period (the key's period changed) starts from the ledger, not from zero.
      std::optional<double> spent;
      const int64_t period = period_start_ms(key.limits.budget_period, now);
      bool period_changed = false;
      {
        std::lock_guard lock(existing->mutex);
        period_changed = key.limits.budget_period != existing->key.limits.budget_period;
      }
      if (period_changed) {
        auto read = spend_since(key.id, period);
        if (!read) std::fprintf(stderr, "tern serve: keys: %s\n", read.error().message.c_str());
        spent = read.value_or(0);
      }
      std::lock_guard lock(existing->mutex);
      const KeyLimits& old = existing->key.limits;
      existing->requests.resize(old.rpm, key.limits.rpm);
      existing->tokens.resize(old.tpm, key.limits.tpm);
      existing->key = key;
      if (spent) {
        existing->period_start = period;
        existing->spent_usd = *spent;
      }
      continue;
    }
    auto state = std::make_shared<KeyState>();
    state->key = key;
    state->requests.level = static_cast<double>(key.limits.rpm);
    state->tokens.level = static_cast<double>(key.limits.tpm);
    state->refilled_ms = now;
    state->period_start = period_start_ms(key.limits.budget_period, now);
    // Budgets survive restarts: this period's spend so far is in the ledger.
    if (key.revoked_ms == 0) {
      auto spent = spend_since(key.id, state->period_start);
      if (!spent) return std::unexpected(spent.error());
      state->spent_usd = *spent;
    }
    std::unique_lock lock(states_mutex_);
    states_.emplace(key.id, std::move(state));
  }
  std::unique_lock lock(states_mutex_);
  // Once any key exists the server requires keys; revoking every key does not open it again.
  any_usable_ = !keys->empty();
  return {};
}

std::shared_ptr<KeyState> Tenants::state_of(const std::string& key_id) const {
  std::shared_lock lock(states_mutex_);
  auto it = states_.find(key_id);
  return it == states_.end() ? nullptr : it->second;
}

bool Tenants::refresh_after_miss() {
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t last = last_miss_refresh_ns_.load();
  if (now - last >= std::chrono::nanoseconds(kMissRefreshInterval).count() && last_miss_refresh_ns_.compare_exchange_strong(last, now)) {
    reload_if_changed();  // a data_version read; the keys are re-read only if the store changed
    return true;
  }
  // Another request looked a moment ago, or is looking now: wait for a reload in progress (it may be
  // bringing this very key), without asking the store again.
  std::lock_guard wait(reload_mutex_);
  return true;
}

std::expected<std::optional<Principal>, wire::ApiError> Tenants::authenticate(std::string_view authorization, std::string_view x_api_key) {
  std::string_view secret = x_api_key;
  if (authorization.size() > 7 && (authorization.substr(0, 7) == "Bearer " || authorization.substr(0, 7) == "bearer ")) {
    secret = authorization.substr(7);
  }
  while (!secret.empty() && secret.back() == ' ') secret.remove_suffix(1);
  if (!auth_required()) return std::nullopt;  // open server: whatever the client sends is ignored
  auto unauthorized = [](std::string message, std::string code) {
    // OpenAI's shape: type invalid_request_error, code invalid_api_key; Anthropic's adapter maps 401
    // to authentication_error.
    return std::unexpected(wire::server_error(401, std::move(message), std::move(code)));
  };
  if (secret.empty()) {
    return unauthorized("no API key: send it as 'Authorization: Bearer tern-sk-...' or 'x-api-key: tern-sk-...'", "missing_api_key");
  }
  const std::string id = key_id_of(secret);
  std::shared_ptr<KeyState> state = id.empty() ? nullptr : state_of(id);
  if (state == nullptr && !id.empty() && refresh_after_miss()) state = state_of(id);
  if (state == nullptr) return unauthorized("invalid API key", "invalid_api_key");
  std::lock_guard lock(state->mutex);
  const std::string hash = hash_secret(state->key.salt, secret);
  if (hash.size() != state->key.hash.size() || CRYPTO_memcmp(hash.data(), state->key.hash.data(), hash.size()) != 0) {
    return unauthorized("invalid API key", "invalid_api_key");
  }
  if (state->key.revoked_ms != 0) return unauthorized(fmt::format("API key {} has been revoked", id), "revoked_api_key");
  if (!state->key.is_usable(unix_ms())) return unauthorized(fmt::format("API key {} expired on {}", id, metering::utc_day(state->key.expires_ms)), "expired_api_key");
  return Principal{.key_id = state->key.id, .name = state->key.name, .org = state->key.org, .admin = state->key.admin};
}

bool Tenants::may_use(const Principal& principal, const std::string& model) const {
  auto state = state_of(principal.key_id);
  if (state == nullptr) return false;
  std::lock_guard lock(state->mutex);
  const auto& models = state->key.limits.models;
  return models.empty() || std::find(models.begin(), models.end(), model) != models.end();
}

std::optional<Refusal> Tenants::check_models(const Principal& principal, const std::vector<std::string>& models) {
  for (const auto& name : models) {
    if (may_use(principal, name)) continue;
    wire::ApiError error = wire::server_error(403, fmt::format("key {} may not use model '{}'", principal.key_id, name), "model_not_allowed");
    error.type = "permission_error";
    error.param = "model";
    count_refusal(principal.key_id, "model_not_allowed");
    return Refusal{std::move(error), {}};
  }
  return std::nullopt;
}

std::expected<std::unique_ptr<Admission>, Refusal> Tenants::admit(const Principal& principal, int64_t prompt_tokens_estimate,
                                                                   std::optional<int64_t> max_tokens, double cost_estimate_usd) {
  auto state = state_of(principal.key_id);
  if (state == nullptr) return std::unexpected(Refusal{wire::server_error(401, "invalid API key", "invalid_api_key"), {}});
  std::unique_lock lock(state->mutex);
  const int64_t now = unix_ms();
  refresh(*state, now);
  const KeyLimits& l = state->key.limits;
  auto too_many = [&](std::string reason, std::string message, double retry_after_s) {
    Headers headers = limit_headers(*state);
    wire::ApiError error = wire::server_error(429, std::move(message), reason);
    error.retry_after = std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(retry_after_s))));
    lock.unlock();
    count_refusal(principal.key_id, reason);
    return std::unexpected(Refusal{std::move(error), std::move(headers)});
  };
  if (l.max_parallel > 0 && state->in_flight >= l.max_parallel) {
    return too_many("concurrency_limit_exceeded",
                    fmt::format("key {} already has {} requests in flight (its limit is {})", principal.key_id, state->in_flight, l.max_parallel), 1);
  }
  if (l.rpm > 0 && state->requests.level < 1) {
    return too_many("rate_limit_requests",
                    fmt::format("key {} is over its limit of {} requests per minute", principal.key_id, l.rpm),
                    state->requests.seconds_until(l.rpm, 1));
  }
  int64_t reserve = prompt_tokens_estimate + completion_reserve(max_tokens);
  if (l.tpm > 0) {
    reserve = std::min(reserve, l.tpm);  // a request larger than a minute's tokens still runs once the bucket is full
    if (state->tokens.level < static_cast<double>(reserve)) {
      return too_many("rate_limit_tokens",
                      fmt::format("key {} is over its limit of {} tokens per minute (this request reserves {})", principal.key_id, l.tpm, reserve),
                      state->tokens.seconds_until(l.tpm, static_cast<double>(reserve)));
    }
  }
  if (l.budget_usd > 0 && (state->spent_usd >= l.budget_usd || state->spent_usd + state->reserved_usd + cost_estimate_usd > l.budget_usd)) {
    wire::ApiError error = wire::server_error(402,
        fmt::format("key {} has used ${:.4f} of its ${:.4f} {} budget{}; this request could cost up to ${:.4f}. The budget renews on {}",
                    principal.key_id, state->spent_usd, l.budget_usd,
                    l.budget_period == BudgetPeriod::kDay ? "daily" : l.budget_period == BudgetPeriod::kWeek ? "weekly" : "monthly",
                    state->reserved_usd > 0 ? fmt::format(" (${:.4f} more in flight)", state->reserved_usd) : "", cost_estimate_usd,
                    metering::utc_day(period_end_ms(l.budget_period, state->period_start))),
        "budget_exceeded");
    lock.unlock();
    count_refusal(principal.key_id, "budget_exceeded");
    return std::unexpected(Refusal{std::move(error), {}});
  }
  state->in_flight += 1;
  if (l.rpm > 0) state->requests.level -= 1;
  if (l.tpm > 0) state->tokens.level -= static_cast<double>(reserve);
  state->reserved_usd += cost_estimate_usd;
  Headers headers = limit_headers(*state);
  return std::make_unique<Admission>(state, l.tpm > 0 ? reserve : 0, cost_estimate_usd, std::move(headers));
}

std::string Tenants::cache_salt(const Principal* principal, const std::string& request_salt) {
  if (principal == nullptr) return request_salt;
  const std::string scope = principal->org.empty() ? "key:" + principal->key_id : "org:" + principal->org;
  std::string material = scope;
  material += '\0';
  material += request_salt;
  return sha256_hex({reinterpret_cast<const uint8_t*>(material.data()), material.size()}).substr(0, 32);
}

void Tenants::count_request(const std::string& key_id, const std::string& model, const wire::Usage& usage, int status) {
  std::lock_guard lock(metrics_mutex_);
  auto label = std::pair{key_id, model};
  if (!series_.contains(label) && series_.size() >= options_.max_metric_series) label = {"other", "other"};
  Series& s = series_[label];
  s.requests += 1;
  if (status != 200) s.errors += 1;
  s.prompt_tokens += usage.prompt_tokens;
  s.cached_tokens += usage.cached_tokens;
  s.completion_tokens += usage.completion_tokens;
  s.cost_usd += usage.cost_usd.value_or(0);
}

void Tenants::count_refusal(const std::string& key_id, const std::string& reason) {
  std::lock_guard lock(metrics_mutex_);
  std::string label = key_id + '\x1f' + reason;
  if (!refusals_.contains(label) && refusals_.size() >= options_.max_metric_series) label = std::string("other\x1f") + reason;
  refusals_[label] += 1;
}

std::string Tenants::metrics_text() const {
  std::string out;
  {
    std::lock_guard lock(metrics_mutex_);
    auto family = [&](const char* name, const char* type, const char* help, auto value) {
      prometheus_header(out, name, type, help);
      for (const auto& [label, s] : series_) {
        out += fmt::format("tern:{}{{key=\"{}\",model=\"{}\"}} {}\n", name, prometheus_label(label.first), prometheus_label(label.second), value(s));
      }
    };
    family("key_requests_total", "counter", "Generation requests by API key and model.", [](const Series& s) { return s.requests; });
    family("key_request_errors_total", "counter", "Requests that did not end with status 200.", [](const Series& s) { return s.errors; });
    family("key_prompt_tokens_total", "counter", "Prompt tokens by API key and model.", [](const Series& s) { return s.prompt_tokens; });
    family("key_cached_tokens_total", "counter", "Prompt tokens read from the prefix cache.", [](const Series& s) { return s.cached_tokens; });
    family("key_completion_tokens_total", "counter", "Completion tokens by API key and model.", [](const Series& s) { return s.completion_tokens; });
    family("key_cost_usd_total", "counter", "Cost in USD by API key and model.", [](const Series& s) { return s.cost_usd; });
    prometheus_header(out, "key_refusals_total", "counter", "Requests refused by a key's allow-list, limits or budget.");
    for (const auto& [label, count] : refusals_) {
      const size_t split = label.find('\x1f');
      out += fmt::format("tern:key_refusals_total{{key=\"{}\",reason=\"{}\"}} {}\n", prometheus_label(label.substr(0, split)), label.substr(split + 1), count);
    }
  }
  std::vector<std::shared_ptr<KeyState>> states;
  {
    std::shared_lock lock(states_mutex_);
    for (const auto& [id, state] : states_) states.push_back(state);
  }
  std::string in_flight, spent, budget, alert;
  const int64_t now = unix_ms();
  size_t shown = 0;
  for (const auto& state : states) {
    std::lock_guard lock(state->mutex);
    if (state->key.revoked_ms != 0 || ++shown > options_.max_metric_series) continue;
    refresh(*state, now);
    const std::string key = prometheus_label(state->key.id);
    in_flight += fmt::format("tern:key_in_flight{{key=\"{}\"}} {}\n", key, state->in_flight);
    if (state->key.limits.budget_usd > 0) {
      spent += fmt::format("tern:key_budget_spent_usd{{key=\"{}\"}} {}\n", key, state->spent_usd);
      budget += fmt::format("tern:key_budget_usd{{key=\"{}\"}} {}\n", key, state->key.limits.budget_usd);
      alert += fmt::format("tern:key_budget_alert{{key=\"{}\"}} {}\n", key, state->spent_usd >= options_.budget_alert_ratio * state->key.limits.budget_usd ? 1 : 0);
    }
  }
  prometheus_header(out, "key_in_flight", "gauge", "Requests in flight by API key.");
  out += in_flight;
  prometheus_header(out, "key_budget_spent_usd", "gauge", "Spend in the key's current budget period.");
  out += spent;
  prometheus_header(out, "key_budget_usd", "gauge", "The key's budget per period.");
  out += budget;
  prometheus_header(out, "key_budget_alert", "gauge", "1 once a key has spent its soft threshold (--budget-alert) of its budget.");
  out += alert;
  return out;
}

}  // namespace tern::tenants
