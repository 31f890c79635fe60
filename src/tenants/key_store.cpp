#include "tenants/key_store.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "util/sha256.h"
#include "util/clock.h"
#include "util/tern_home.h"
#include "util/units.h"

namespace tern::tenants {
namespace {

using json = nlohmann::json;

Result<std::string> random_hex(size_t bytes) {
  std::vector<unsigned char> buffer(bytes);
  if (RAND_bytes(buffer.data(), static_cast<int>(bytes)) != 1) return fail("keys: the system's random generator failed");
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : buffer) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/// 1 to 64 characters: a letter or digit, then letters, digits and . _ : @ / -
bool is_valid_name(std::string_view text) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (text.empty() || text.size() > 64 || !alnum(text[0])) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) { return alnum(c) || std::string_view("._:@/-").find(c) != std::string_view::npos; });
}

/// "k" and 12 lower-case hex digits: what key ids look like.
bool looks_like_key_id(std::string_view text) {
  return text.size() == 13 && text[0] == 'k' &&
         std::all_of(text.begin() + 1, text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Result<void> validate(const KeySpec& spec) {
  if (spec.name && !is_valid_name(*spec.name)) {
    return fail("name: 1 to 64 characters: letters, digits and . _ : @ / - (got \"{}\")", *spec.name);
  }
  if (spec.name && looks_like_key_id(*spec.name)) return fail("name: \"{}\" looks like a key id; pick another", *spec.name);
  if (spec.org && !spec.org->empty() && !is_valid_name(*spec.org)) {
    return fail("org: 1 to 64 characters: letters, digits and . _ : @ / - (got \"{}\")", *spec.org);
  }
  if (spec.models) {
    for (const auto& model : *spec.models) {
      if (model.empty() || model.size() > 256 || model.find(',') != std::string::npos) return fail("models: bad model name \"{}\"", model);
    }
  }
  for (const auto& [value, field] : {std::pair{spec.rpm, "rpm"}, {spec.tpm, "tpm"}, {spec.max_parallel, "max_parallel"}}) {
    if (value && (*value < 0 || *value > int64_t{1} << 40)) return fail("{}: must be 0 (unlimited) or a positive number", field);
  }
  if (spec.budget_usd && !(*spec.budget_usd >= 0 && *spec.budget_usd < 1e12)) return fail("budget: must be 0 (none) or a positive amount in USD");
  if (spec.expires_in_s && !(*spec.expires_in_s >= 0)) return fail("expires: must be a duration from now, e.g. 30d");
  return {};
}

void apply(const KeySpec& spec, ApiKey& key, int64_t now) {
  if (spec.name) key.name = *spec.name;
  if (spec.org) key.org = *spec.org;
  if (spec.admin) key.admin = *spec.admin;
  if (spec.models) key.limits.models = *spec.models;
  if (spec.rpm) key.limits.rpm = *spec.rpm;
  if (spec.tpm) key.limits.tpm = *spec.tpm;
  if (spec.max_parallel) key.limits.max_parallel = *spec.max_parallel;
  if (spec.budget_usd) key.limits.budget_usd = *spec.budget_usd;
  if (spec.budget_period) key.limits.budget_period = *spec.budget_period;
  if (spec.expires_in_s) key.expires_ms = *spec.expires_in_s > 0 ? now + static_cast<int64_t>(*spec.expires_in_s * 1000) : 0;
}

json spec_json(const KeySpec& spec) {
  json out = json::object();
  if (spec.name) out["name"] = *spec.name;
  if (spec.org) out["org"] = *spec.org;
  if (spec.admin) out["admin"] = *spec.admin;
  if (spec.models) out["models"] = *spec.models;
  if (spec.rpm) out["rpm"] = *spec.rpm;
  if (spec.tpm) out["tpm"] = *spec.tpm;
  if (spec.max_parallel) out["max_parallel"] = *spec.max_parallel;
  if (spec.budget_usd) out["budget_usd"] = *spec.budget_usd;
  if (spec.budget_period) out["budget_period"] = budget_period_name(*spec.budget_period);
  if (spec.expires_in_s) out["expires_in_s"] = *spec.expires_in_s;
  return out;
}

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, org TEXT NOT NULL, admin INTEGER NOT NULL,"
    " models TEXT NOT NULL, rpm INTEGER NOT NULL, tpm INTEGER NOT NULL, max_parallel INTEGER NOT NULL,"
    " budget_usd REAL NOT NULL, budget_period TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
    " revoked_ms INTEGER NOT NULL, salt TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL,"
    " action TEXT NOT NULL, key_id TEXT NOT NULL, detail TEXT NOT NULL);";

constexpr const char* kColumns =
    "id, name, org, admin, models, rpm, tpm, max_parallel, budget_usd, budget_period, created_ms, expires_ms, revoked_ms, salt, hash";

ApiKey read_key(const sqlite::Statement& s) {
  ApiKey k;
  k.id = s.text(0);
  k.name = s.text(1);
  k.org = s.text(2);
  k.admin = s.integer(3) != 0;
  k.limits.models = split(s.text(4));
  k.limits.rpm = s.integer(5);
  k.limits.tpm = s.integer(6);
  k.limits.max_parallel = s.integer(7);
  k.limits.budget_usd = s.real(8);
  k.limits.budget_period = parse_budget_period(s.text(9)).value_or(BudgetPeriod::kMonth);
  k.created_ms = s.integer(10);
  k.expires_ms = s.integer(11);
  k.revoked_ms = s.integer(12);
  k.salt = s.text(13);
  k.hash = s.text(14);
  return k;
}

}  // namespace

const char* budget_period_name(BudgetPeriod period) {
  switch (period) {
    case BudgetPeriod::kDay: return "day";
    case BudgetPeriod::kWeek: return "week";
    case BudgetPeriod::kMonth: break;
  }
  return "month";
}

Result<BudgetPeriod> parse_budget_period(const std::string& text) {
  if (text == "day") return BudgetPeriod::kDay;
  if (text == "week") return BudgetPeriod::kWeek;
  if (text == "month") return BudgetPeriod::kMonth;
  return fail("budget_period: must be day, week or month (got \"{}\")", text);
}

json ApiKey::to_json() const {
  return {{"id", id}, {"name", name}, {"org", org}, {"admin", admin}, {"models", limits.models}, {"rpm", limits.rpm},
          {"tpm", limits.tpm}, {"max_parallel", limits.max_parallel}, {"budget_usd", limits.budget_usd},
          {"budget_period", budget_period_name(limits.budget_period)}, {"created_ms", created_ms},
          {"expires_ms", expires_ms == 0 ? json(nullptr) : json(expires_ms)}, {"revoked_ms", revoked_ms == 0 ? json(nullptr) : json(revoked_ms)}};
}

Result<KeySpec> KeySpec::from_json(const json& body) {
  if (!body.is_object()) return fail("the body must be a JSON object");
  static const std::set<std::string> known = {"name", "org", "admin", "models", "rpm", "tpm", "max_parallel", "budget_usd",
                                              "budget_period", "expires", "key"};
  KeySpec spec;
  for (const auto& [field, value] : body.items()) {
    if (!known.contains(field)) return fail("{}: unknown field", field);
    auto must_be = [&](const char* what) { return fail("{}: must be {}", field, what); };
    if (field == "name" || field == "org") {
      if (!value.is_string()) return must_be("a string");
      (field == "name" ? spec.name : spec.org) = value.get<std::string>();
    } else if (field == "admin") {
      if (!value.is_boolean()) return must_be("true or false");
      spec.admin = value.get<bool>();
    } else if (field == "models") {
      if (!value.is_array() || !std::all_of(value.begin(), value.end(), [](const json& m) { return m.is_string(); })) {
        return must_be("an array of model names");
      }
      spec.models = value.get<std::vector<std::string>>();
    } else if (field == "rpm" || field == "tpm" || field == "max_parallel") {
      if (!value.is_number_integer()) return must_be("an integer");
      (field == "rpm" ? spec.rpm : field == "tpm" ? spec.tpm : spec.max_parallel) = value.get<int64_t>();
    } else if (field == "budget_usd") {
      if (!value.is_number()) return must_be("a number");
      spec.budget_usd = value.get<double>();
    } else if (field == "budget_period") {
      if (!value.is_string()) return must_be("day, week or month");
      auto period = parse_budget_period(value.get<std::string>());
      if (!period) return std::unexpected(period.error());
      spec.budget_period = *period;
    } else if (field == "expires") {
      if (value.is_null()) {
        spec.expires_in_s = 0;
        continue;
      }
      if (!value.is_string()) return must_be("a duration such as \"30d\", or null");
      auto seconds = parse_seconds(value.get<std::string>(), 36500);
      if (!seconds) return fail("expires: {}", seconds.error().message);
      spec.expires_in_s = *seconds;
    }
  }
  return spec;
}

std::string key_id_of(std::string_view secret) {
  constexpr std::string_view kPrefix = "tern-sk-";
  if (!secret.starts_with(kPrefix)) return {};
  secret.remove_prefix(kPrefix.size());
  const size_t dash = secret.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash > 32) return {};
  return std::string(secret.substr(0, dash));
}

std::string hash_secret(const std::string& salt, std::string_view secret) {
  std::string material = salt;
  material += secret;
  return sha256_hex({reinterpret_cast<const uint8_t*>(material.data()), material.size()});
}

std::string KeyStore::default_path() { return tern_home() + "/keys.db"; }

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::string& path) {
  auto db = sqlite::Database::open(path);
  if (!db) return with_context("keys", db.error());
  if (auto ok = db->exec(kSchema); !ok) return with_context("keys: creating the schema", ok.error());
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(*db)));
}

Result<ApiKey> KeyStore::find(const std::string& id_or_name) {
  // A name may be reused after its key was revoked: the live key wins, then the newest.
  auto stmt = db_.prepare(fmt::format("SELECT {} FROM keys WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC, revoked_ms != 0, created_ms DESC LIMIT 1", kColumns));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id_or_name);
  auto row = stmt->step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return fail("no key with id or name \"{}\"", id_or_name);
  return read_key(*stmt);
}

Result<void> KeyStore::save(const ApiKey& k) {
  auto stmt = db_.prepare(fmt::format("INSERT OR REPLACE INTO keys ({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)", kColumns));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, k.id).bind(2, k.name).bind(3, k.org).bind(4, int64_t{k.admin}).bind(5, join(k.limits.models));
  stmt->bind(6, k.limits.rpm).bind(7, k.limits.tpm).bind(8, k.limits.max_parallel).bind(9, k.limits.budget_usd);
  stmt->bind(10, std::string_view(budget_period_name(k.limits.budget_period))).bind(11, k.created_ms).bind(12, k.expires_ms);
  stmt->bind(13, k.revoked_ms).bind(14, k.salt).bind(15, k.hash);
  return stmt->run();
}

Result<void> KeyStore::record(const std::string& actor, const std::string& action, const std::string& key_id, const std::string& detail) {
  auto stmt = db_.prepare("INSERT INTO audit (ts_ms, actor, action, key_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, unix_ms()).bind(2, actor).bind(3, action).bind(4, key_id).bind(5, detail);
  return stmt->run();
}

Result<std::pair<ApiKey, std::string>> KeyStore::create(const KeySpec& spec, const std::string& actor) {
  if (!spec.name) return fail("name: required");
  if (auto ok = validate(spec); !ok) return std::unexpected(ok.error());
  std::lock_guard lock(mutex_);
  if (auto existing = find(*spec.name); existing && existing->revoked_ms == 0 && existing->name == *spec.name) {
    return fail("a key named \"{}\" exists already ({}); revoke it first or pick another name", *spec.name, existing->id);
  }
  auto id = random_hex(6);
  auto secret_part = random_hex(32);
  auto salt = random_hex(16);
  if (!id || !secret_part || !salt) return fail("keys: the system's random generator failed");
  ApiKey key;
  const int64_t now = unix_ms();
  key.id = "k" + *id;
  key.created_ms = now;
  apply(spec, key, now);
  const std::string secret = "tern-sk-" + key.id + "-" + *secret_part;
  key.salt = *salt;
  key.hash = hash_secret(key.salt, secret);
  auto ok = sqlite::transaction(db_, [&]() -> Result<void> {
    if (auto saved = save(key); !saved) return saved;
    return record(actor, "create", key.id, spec_json(spec).dump());
  });
  if (!ok) return std::unexpected(ok.error());
  ++own_writes_;
  return std::pair{key, secret};
}

Result<ApiKey> KeyStore::update(const std::string& id_or_name, const KeySpec& spec, const std::string& actor) {
  if (auto ok = validate(spec); !ok) return std::unexpected(ok.error());
  std::lock_guard lock(mutex_);
  auto key = find(id_or_name);
  if (!key) return key;
  if (key->revoked_ms != 0) return fail("key {} ({}) is revoked", key->id, key->name);
  apply(spec, *key, unix_ms());
  auto ok = sqlite::transaction(db_, [&]() -> Result<void> {
    if (auto saved = save(*key); !saved) return saved;
    return record(actor, "update", key->id, spec_json(spec).dump());
  });
  if (!ok) return std::unexpected(ok.error());
  ++own_writes_;
  return key;
}

Result<ApiKey> KeyStore::revoke(const std::string& id_or_name, const std::string& actor) {
  std::lock_guard lock(mutex_);
  auto key = find(id_or_name);
  if (!key) return key;
  if (key->revoked_ms != 0) return fail("key {} ({}) is revoked already", key->id, key->name);
  key->revoked_ms = unix_ms();
  auto ok = sqlite::transaction(db_, [&]() -> Result<void> {
    if (auto saved = save(*key); !saved) return saved;
    return record(actor, "revoke", key->id, "{}");
  });
  if (!ok) return std::unexpected(ok.error());
  ++own_writes_;
  return key;
}

Result<std::vector<ApiKey>> KeyStore::list() {
  std::lock_guard lock(mutex_);
  auto stmt = db_.prepare(fmt::format("SELECT {} FROM keys ORDER BY created_ms", kColumns));
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<ApiKey> out;
  for (;;) {
    auto row = stmt->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(read_key(*stmt));
  }
  return out;
}

Result<std::vector<AuditEntry>> KeyStore::audit(int64_t limit) {
  std::lock_guard lock(mutex_);
  auto stmt = db_.prepare("SELECT ts_ms, actor, action, key_id, detail FROM audit ORDER BY id DESC LIMIT ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, limit);
  std::vector<AuditEntry> out;
  for (;;) {
    auto row = stmt->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back({.time_ms = stmt->integer(0), .actor = stmt->text(1), .action = stmt->text(2), .key_id = stmt->text(3), .detail = stmt->text(4)});
  }
  return out;
}

int64_t KeyStore::data_version() {
  std::lock_guard lock(mutex_);
  // PRAGMA data_version moves only for other connections' commits; this one's are counted here.
  return db_.data_version() + own_writes_;
}

}  // namespace tern::tenants
