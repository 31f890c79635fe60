#pragma once
// API keys: who may call `tern serve`, with which limits. Kept in a small SQLite file
// ($TERN_HOME/keys.db) that `tern keys` and the server's admin API both write and the server reloads
// when it changes. A key's secret (`tern-sk-<id>-<64 hex>`) is shown once at creation; only a salted
// SHA-256 of it is stored. (A fast hash is enough: the secret is 256 random bits, not a password, so
// there is nothing to brute-force; verifying costs a microsecond on every request.)
// Every change is written to an audit table in the same transaction: who did what to which key.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.h"
#include "util/sqlite.h"

namespace tern::tenants {

enum class BudgetPeriod { kDay, kWeek, kMonth };
const char* budget_period_name(BudgetPeriod period);
Result<BudgetPeriod> parse_budget_period(const std::string& text);

struct KeyLimits {
  std::vector<std::string> models;  ///< allowed public model names; empty: all
  int64_t rpm = 0;                  ///< requests per minute; 0: unlimited
  int64_t tpm = 0;                  ///< tokens (prompt + completion) per minute; 0: unlimited
  int64_t max_parallel = 0;         ///< concurrent requests; 0: unlimited
  double budget_usd = 0;            ///< spend per period; 0: none
  BudgetPeriod budget_period = BudgetPeriod::kMonth;
};

struct ApiKey {
  std::string id;  ///< "k" + 12 hex digits: public, appears in the ledger, metrics and logs
  std::string name;
  std::string org;
  bool admin = false;  ///< may call /admin/*
  KeyLimits limits;
  int64_t created_ms = 0;
  int64_t expires_ms = 0;  ///< 0: never
  int64_t revoked_ms = 0;  ///< 0: not revoked
  std::string salt;
  std::string hash;  ///< hex SHA-256 of salt + secret

  bool is_usable(int64_t now_ms) const { return revoked_ms == 0 && (expires_ms == 0 || now_ms < expires_ms); }
  /// What `tern keys list` and GET /admin/keys show (never the hash).
  nlohmann::json to_json() const;
};

/// The fields of a key that `create` sets and `update` may change; absent fields keep their value.
struct KeySpec {
  std::optional<std::string> name;
  std::optional<std::string> org;
  std::optional<bool> admin;
  std::optional<std::vector<std::string>> models;
  std::optional<int64_t> rpm, tpm, max_parallel;
  std::optional<double> budget_usd;
  std::optional<BudgetPeriod> budget_period;
  std::optional<double> expires_in_s;  ///< from now; 0: never

  /// From the admin API's JSON body, refusing unknown fields and wrong types.
  static Result<KeySpec> from_json(const nlohmann::json& body);
};

struct AuditEntry {
  int64_t time_ms = 0;
  std::string actor;   ///< "cli:<user>" or the admin key's id
  std::string action;  ///< "create", "revoke", "update"
  std::string key_id;
  std::string detail;  ///< the fields given, as JSON
};

/// Splits "tern-sk-<id>-<secret>" into the id, or empty if it is not shaped like a key.
std::string key_id_of(std::string_view secret);
/// Hex SHA-256 of salt + secret.
std::string hash_secret(const std::string& salt, std::string_view secret);

class KeyStore {
 public:
  static Result<std::unique_ptr<KeyStore>> open(const std::string& path);
  /// $TERN_HOME/keys.db
  static std::string default_path();

  /// A new key and its secret (shown once).
  Result<std::pair<ApiKey, std::string>> create(const KeySpec& spec, const std::string& actor);
  Result<ApiKey> update(const std::string& id_or_name, const KeySpec& spec, const std::string& actor);
  Result<ApiKey> revoke(const std::string& id_or_name, const std::string& actor);
  /// Every key, revoked ones included, oldest first.
  Result<std::vector<ApiKey>> list();
  Result<std::vector<AuditEntry>> audit(int64_t limit);
  /// Moves whenever the keys change, through this store or any other connection or process.
  int64_t data_version();

 private:
  explicit KeyStore(sqlite::Database db) : db_(std::move(db)) {}
  Result<ApiKey> find(const std::string& id_or_name);
  Result<void> save(const ApiKey& key);
  Result<void> record(const std::string& actor, const std::string& action, const std::string& key_id, const std::string& detail);

  std::mutex mutex_;  // the server's admin API and its reloads share one connection
  sqlite::Database db_;
  int64_t own_writes_ = 0;
};

}  // namespace tern::tenants
