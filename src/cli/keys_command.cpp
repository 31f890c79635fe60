// `tern keys`: create, list, update and revoke API keys, and read the audit log. Works on the same
// key store as a running `tern serve` (which picks changes up within a second); the admin API
// (/admin/keys) does the same over HTTP.

#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "metering/ledger.h"
#include "tenants/key_store.h"
#include "util/clock.h"
#include "util/units.h"

namespace tern::cli {
namespace {

struct KeysOptions {
  std::string keys_db;
  std::string target;  // revoke / update: id or name
  std::string name, org, models, budget_period, expires;
  int64_t rpm = -1, tpm = -1, max_parallel = -1;
  double budget = -1;
  bool admin = false;
  bool json = false;
  int64_t limit = 50;
};

/// Who ran the command, for the audit log: the account's name (from the password database, as `id -un`
/// says it; $USER is unset under sudo -u, cron and many containers), the uid only if it has no name.
std::string actor() {
  if (const passwd* account = getpwuid(getuid()); account != nullptr && account->pw_name != nullptr && *account->pw_name != '\0') {
    return std::string("cli:") + account->pw_name;
  }
  const char* user = std::getenv("USER");
  return std::string("cli:") + (user != nullptr && *user != '\0' ? user : std::to_string(getuid()));
}

/// The flags given, as a KeySpec (absent flags stay absent, so update changes only those).
Result<tenants::KeySpec> spec_from(const KeysOptions& o, CLI::App& command) {
  tenants::KeySpec spec;
  auto given = [&](const char* flag) { return command.count(flag) > 0; };
  if (given("--name")) spec.name = o.name;
  if (given("--org")) spec.org = o.org;
  if (given("--admin")) spec.admin = o.admin;
  if (given("--models")) {
    std::vector<std::string> models;
    size_t start = 0;
    while (start <= o.models.size()) {
      size_t end = o.models.find(',', start);
      if (end == std::string::npos) end = o.models.size();
      if (end > start) models.push_back(o.models.substr(start, end - start));
      start = end + 1;
    }
    spec.models = models;
  }
  if (given("--rpm")) spec.rpm = o.rpm;
  if (given("--tpm")) spec.tpm = o.tpm;
  if (given("--max-parallel")) spec.max_parallel = o.max_parallel;
  if (given("--budget")) spec.budget_usd = o.budget;
  if (given("--budget-period")) {
    auto period = tenants::parse_budget_period(o.budget_period);
    if (!period) return std::unexpected(period.error());
    spec.budget_period = *period;
  }
  if (given("--expires")) {
    if (o.expires == "never") {
      spec.expires_in_s = 0;
    } else {
      auto seconds = parse_seconds(o.expires, 36500);
      if (!seconds) return fail("--expires: {}", seconds.error().message);
      spec.expires_in_s = *seconds;
    }
  }
  return spec;
}

std::string when(int64_t ms) { return ms == 0 ? "-" : utc_text(ms, "%Y-%m-%d %H:%M"); }

std::string limits_text(const tenants::ApiKey& k) {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : " ") + part; };
  if (k.limits.rpm > 0) add(fmt::format("rpm={}", k.limits.rpm));
  if (k.limits.tpm > 0) add(fmt::format("tpm={}", k.limits.tpm));
  if (k.limits.max_parallel > 0) add(fmt::format("parallel={}", k.limits.max_parallel));
  if (k.limits.budget_usd > 0) add(fmt::format("budget=${}/{}", k.limits.budget_usd, tenants::budget_period_name(k.limits.budget_period)));
  if (!k.limits.models.empty()) {
    std::string models;
    for (const auto& m : k.limits.models) models += (models.empty() ? "" : ",") + m;
    add("models=" + models);
  }
  return out.empty() ? "-" : out;
}

std::unique_ptr<tenants::KeyStore> open_store(const KeysOptions& o) {
  auto store = tenants::KeyStore::open(o.keys_db.empty() ? tenants::KeyStore::default_path() : o.keys_db);
  if (!store) {
    std::fprintf(stderr, "error: %s\n", store.error().message.c_str());
    return nullptr;
  }
  return std::move(*store);
}

void add_limit_flags(CLI::App& command, KeysOptions& o) {
  command.add_option("--org", o.org, "Organisation: its keys share a prompt cache; other orgs never see it");
  command.add_option("--models", o.models, "Models the key may use, comma-separated (default: all)");
  command.add_option("--rpm", o.rpm, "Requests per minute (0: unlimited)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  command.add_option("--tpm", o.tpm, "Tokens per minute, prompt + completion (0: unlimited)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  command.add_option("--max-parallel", o.max_parallel, "Requests in flight at once (0: unlimited)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  command.add_option("--budget", o.budget, "Spend limit in USD per budget period (0: none)")->check(CLI::Range(0.0, 1e12));
  command.add_option("--budget-period", o.budget_period, "day, week or month (default month)");
  command.add_option("--expires", o.expires, "Lifetime from now, e.g. 30d, 12h (never: no expiry)");
  command.add_flag("--admin", o.admin, "May call the admin API (/admin/keys, /admin/usage)");
}

}  // namespace

Runner add_keys_command(CLI::App& app) {
  auto* keys = app.add_subcommand("keys", "Create, list, update and revoke API keys");
  keys->require_subcommand(1);
  auto o = std::make_shared<KeysOptions>();
  keys->add_option("--keys-db", o->keys_db, "Key store (default $TERN_HOME/keys.db)");
  auto* create = keys->add_subcommand("create", "Create a key and print its secret (shown once)");
  create->add_option("--name", o->name, "A name for the key, unique among live keys")->required();
  add_limit_flags(*create, *o);
  create->add_flag("--json", o->json, "Print the key as JSON");
  auto* list = keys->add_subcommand("list", "List keys (never their secrets)");
  list->add_flag("--json", o->json, "Print JSON");
  auto* revoke = keys->add_subcommand("revoke", "Revoke a key: its requests are refused from the next second on");
  revoke->add_option("key", o->target, "The key's id or name")->required();
  auto* update = keys->add_subcommand("update", "Change a key's name, org, models or limits");
  update->add_option("key", o->target, "The key's id or name")->required();
  update->add_option("--name", o->name, "A new name");
  add_limit_flags(*update, *o);
  auto* audit = keys->add_subcommand("audit", "Who created, changed or revoked which key, newest first");
  audit->add_option("--limit", o->limit, "Entries to show")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1000000}));

  return [o, create, list, revoke, update, audit]() -> int {
    auto store = open_store(*o);
    if (!store) return 1;
    if (create->parsed()) {
      auto spec = spec_from(*o, *create);
      if (!spec) return std::fprintf(stderr, "error: %s\n", spec.error().message.c_str()), 2;
      auto created = store->create(*spec, actor());
      if (!created) return std::fprintf(stderr, "error: %s\n", created.error().message.c_str()), 1;
      if (o->json) {
        auto out = created->first.to_json();
        out["key"] = created->second;
        std::printf("%s\n", out.dump(2).c_str());
      } else {
        std::printf("%s\n", created->second.c_str());
        std::fprintf(stderr, "created key %s (%s%s); the secret above is shown only now\n", created->first.id.c_str(), created->first.name.c_str(),
                     created->first.org.empty() ? "" : (", org " + created->first.org).c_str());
      }
      return 0;
    }
    if (list->parsed()) {
      auto all = store->list();
      if (!all) return std::fprintf(stderr, "error: %s\n", all.error().message.c_str()), 1;
      if (o->json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& k : *all) out.push_back(k.to_json());
        std::printf("%s\n", out.dump(2).c_str());
        return 0;
      }
      std::printf("%-14s %-20s %-14s %-6s %-17s %-17s %-9s %s\n", "ID", "NAME", "ORG", "ADMIN", "CREATED", "EXPIRES", "STATE", "LIMITS");
      const int64_t now = unix_ms();
      for (const auto& k : *all) {
        const char* state = k.revoked_ms != 0 ? "revoked" : k.is_usable(now) ? "active" : "expired";
        std::printf("%-14s %-20s %-14s %-6s %-17s %-17s %-9s %s\n", k.id.c_str(), k.name.c_str(), k.org.empty() ? "-" : k.org.c_str(),
                    k.admin ? "yes" : "no", when(k.created_ms).c_str(), when(k.expires_ms).c_str(), state, limits_text(k).c_str());
      }
      return 0;
    }
    if (revoke->parsed() || update->parsed()) {
      Result<tenants::ApiKey> key;
      if (revoke->parsed()) {
        key = store->revoke(o->target, actor());
      } else {
        auto spec = spec_from(*o, *update);
        if (!spec) return std::fprintf(stderr, "error: %s\n", spec.error().message.c_str()), 2;
        key = store->update(o->target, *spec, actor());
      }
      if (!key) return std::fprintf(stderr, "error: %s\n", key.error().message.c_str()), 1;
      std::printf("%s %s (%s): %s\n", revoke->parsed() ? "revoked" : "updated", key->id.c_str(), key->name.c_str(), limits_text(*key).c_str());
      return 0;
    }
    if (audit->parsed()) {
      auto entries = store->audit(o->limit);
      if (!entries) return std::fprintf(stderr, "error: %s\n", entries.error().message.c_str()), 1;
      std::printf("%-17s %-20s %-8s %-14s %s\n", "TIME (UTC)", "ACTOR", "ACTION", "KEY", "DETAIL");
      for (const auto& e : *entries) {
        std::printf("%-17s %-20s %-8s %-14s %s\n", when(e.time_ms).c_str(), e.actor.c_str(), e.action.c_str(), e.key_id.c_str(), e.detail.c_str());
      }
      return 0;
    }
    return 2;
  };
}

}  // namespace tern::cli
