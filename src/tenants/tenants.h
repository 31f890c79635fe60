#pragma once
// Who is calling and what they may do: the gateway asks Tenants to authenticate each request
// (Authorization: Bearer or x-api-key), then to admit it against the key's model allow-list,
// concurrency cap, requests/min and tokens/min (token buckets) and budget, and settles the admission
// with the request's real usage and cost when it ends. Keys come from the KeyStore and are reloaded
// when its file changes (`tern keys ...` from another process, or the admin API).
//
// Without a usable key in the store the server is open (no authentication); `tern serve` then only
// listens on loopback unless told --insecure-no-auth.
//
// Limits hold under concurrency: one mutex per key covers the check and the reservation together,
// so parallel clients cannot all pass a check that only one of them fits.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "wire/types.h"
#include "metering/ledger.h"
#include "tenants/key_store.h"

namespace tern::tenants {

using Headers = std::vector<std::pair<std::string, std::string>>;

/// The caller of one request, once authenticated.
struct Principal {
  std::string key_id;
  std::string name;
  std::string org;
  bool admin = false;
};

struct Refusal {
  wire::ApiError error;
  Headers headers;  ///< x-ratelimit-* (Retry-After is in error.retry_after)
};

struct TenantOptions {
  double budget_alert_ratio = 0.8;  ///< spend / budget above which the soft-threshold metric is 1
  size_t max_metric_series = 500;   ///< (key, model) pairs with their own metric labels; the rest are "other"
  int64_t default_reserve_tokens = 512;  ///< completion tokens reserved when a request gives no max_tokens
};

struct KeyState;

/// A request's hold on its key's limits: a concurrency slot, reserved tokens and an estimated cost.
/// settle() with the real usage; dropping it unsettled gives everything back.
class Admission {
 public:
  Admission(std::shared_ptr<KeyState> state, int64_t reserved_tokens, double reserved_cost, Headers headers);
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  void settle(int64_t tokens_used, double cost_usd);
  /// x-ratelimit-* headers as they stood when the request was admitted.
  const Headers& headers() const { return headers_; }

 private:
  std::shared_ptr<KeyState> state_;
  int64_t reserved_tokens_;
  double reserved_cost_;
  Headers headers_;
  bool settled_ = false;
};

class Tenants {
 public:
  /// `spend_source` reads a key's spend since a time from the ledger (budgets survive restarts).
  using SpendSource = std::function<Result<double>(const std::string& key_id, int64_t since_ms)>;

  Tenants(std::unique_ptr<KeyStore> keys, SpendSource spend_source, TenantOptions options = {});
  ~Tenants();
  /// Reads the keys (and each key's spend this period) for the first time; the server must not start
  /// without them (a failure here would otherwise leave it open).
  Result<void> load();

  /// Whether requests need a key: at least one usable key exists.
  bool auth_required() const;
  /// The caller from the request's headers; nullopt when the server is open and no key was given. A key
  /// id not known yet makes it consult the store first (a key `tern keys create` made a moment ago
  /// works at once), at most once per kMissRefreshInterval: a flood of bad keys costs nothing.
  std::expected<std::optional<Principal>, wire::ApiError> authenticate(std::string_view authorization, std::string_view x_api_key);
  static constexpr std::chrono::milliseconds kMissRefreshInterval{20};
  /// The completion tokens a request reserves: its max_tokens, or the default when it gives none.
  int64_t completion_reserve(std::optional<int64_t> max_tokens) const { return max_tokens.value_or(options_.default_reserve_tokens); }
  /// Whether the key may use `model` (its allow-list).
  bool may_use(const Principal& principal, const std::string& model) const;
  /// The refusal (403 model_not_allowed, counted in tern:key_refusals_total) of a request naming a model
  /// outside the key's allow-list, among `models` (the requested model and its fallbacks); nullopt: all allowed.
  std::optional<Refusal> check_models(const Principal& principal, const std::vector<std::string>& models);
  /// Admission for one generation request: concurrency, requests/min, tokens/min (prompt estimate +
  /// max_tokens), then the budget (spent + reserved + this request's estimated cost).
  std::expected<std::unique_ptr<Admission>, Refusal> admit(const Principal& principal, int64_t prompt_tokens_estimate,
                                                            std::optional<int64_t> max_tokens, double cost_estimate_usd);
  /// The prefix-cache salt: the caller's org (or key, for a key without org) hashed with the request's
  /// own cache_salt, so a request can narrow its sharing but never widen it past its org.
  static std::string cache_salt(const Principal* principal, const std::string& request_salt);

  /// Re-reads the keys if the store changed (every second from serve's key watcher, and after the
  /// admin API changed one); a failure is logged and the keys as they were stay in force.
  void reload_if_changed();
  KeyStore& keys() { return *keys_; }

  /// Per-key, per-model counters for /metrics (bounded label sets).
  void count_request(const std::string& key_id, const std::string& model, const wire::Usage& usage, int status);
  std::string metrics_text() const;

 private:
  Result<void> reload_locked();
  Result<double> spend_since(const std::string& key_id, int64_t since_ms) const;
  std::shared_ptr<KeyState> state_of(const std::string& key_id) const;

  std::unique_ptr<KeyStore> keys_;
  SpendSource spend_source_;
  TenantOptions options_;
  mutable std::shared_mutex states_mutex_;
  std::unordered_map<std::string, std::shared_ptr<KeyState>> states_;  // by key id
  /// reload_if_changed() after an unknown key, unless another did so within kMissRefreshInterval;
  /// whether it looked.
  bool refresh_after_miss();
  std::atomic<int64_t> last_miss_refresh_ns_{0};  // steady clock
  std::mutex reload_mutex_;
  int64_t data_version_ = -1;  // under reload_mutex_
  bool any_usable_ = false;

  struct Series {
    int64_t requests = 0, errors = 0, prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
    double cost_usd = 0;
  };
  mutable std::mutex metrics_mutex_;
  std::map<std::pair<std::string, std::string>, Series> series_;
  std::map<std::string, int64_t> refusals_;  // "key\x1freason"
  friend class Admission;
  void count_refusal(const std::string& key_id, const std::string& reason);
};

/// Start of the budget period holding `now_ms` (UTC day, ISO week from Monday, calendar month).
int64_t period_start_ms(BudgetPeriod period, int64_t now_ms);
/// Start of the next period after the one starting at `start_ms`.
int64_t period_end_ms(BudgetPeriod period, int64_t start_ms);

}  // namespace tern::tenants
