#include "api/admin.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "api/gateway.h"
#include "wire/json_util.h"
#include "metering/token_cost.h"
#include "util/clock.h"

namespace tern::api {

using namespace tern::wire;  // the neutral types and the schema codecs
namespace {

using json = nlohmann::json;

http::Response error(int status, std::string message, std::string code = {}) {
  ApiError e = server_error(status, std::move(message), std::move(code));
  if (status == 403) e.type = "permission_error";
  return error_response(false, e);
}

Result<int64_t> parse_time_ms(const std::string& text, const char* name) {
  if (text.find_first_not_of("0123456789") == std::string::npos && !text.empty() && text.size() <= 12) return std::stoll(text) * 1000;
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) {
    tm = {};
    end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  }
  if (end == nullptr || !(*end == '\0' || (*end == 'Z' && end[1] == '\0'))) {
    return fail("{}: expected a date (2026-11-01), a UTC time (2026-11-01T12:00:00Z) or Unix seconds (got \"{}\")", name, text);
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

/// The caller if it is an admin key; else the refusal was sent.
std::optional<tenants::Principal> require_admin(tenants::Tenants* tenants, const http::Request& q, http::Responder& r) {
  auto caller = authenticate(tenants, q);
  if (!caller) {
    r.send(error_response(false, caller.error()));
    return std::nullopt;
  }
  if (!*caller || !(*caller)->admin) {
    r.send(error(*caller ? 403 : 401,
                 *caller ? fmt::format("key {} is not an admin key", (*caller)->key_id)
                         : "the admin API needs an admin key (create one with: tern keys create --name NAME --admin)",
                 "admin_required"));
    return std::nullopt;
  }
  return **caller;
}

}  // namespace

bool admit_admin_or_open(tenants::Tenants* tenants, const http::Request& q, http::Responder& r) {
  if (tenants == nullptr || !tenants->auth_required()) return true;
  return require_admin(tenants, q, r).has_value();
}

namespace {

/// Runs database work off the I/O thread (the ledger's query thread), then answers.
void off_thread(metering::LedgerWriter* ledger, std::function<void()> work) {
  if (ledger != nullptr) return ledger->run_query(std::move(work));
  work();
}

void answer_usage(metering::LedgerWriter* ledger, const http::Request& q, std::shared_ptr<http::Responder> r, const std::string& only_key) {
  if (ledger == nullptr) return r->send(error(404, "this server keeps no ledger", "no_ledger"));
  auto query = usage_query(q.query_param("from"), q.query_param("to"), q.query_param("group_by"));
  if (!query) return r->send(error(400, query.error().message));
  query->key_id = only_key.empty() ? q.query_param("key") : only_key;
  off_thread(ledger, [ledger, query = *query, r] {
    auto totals = ledger->store().usage(query);
    if (!totals) return r->send(error(500, totals.error().message, "ledger_error"));
    r->send(json_response(200, usage_json(query, *totals)));
  });
}

}  // namespace

Result<metering::UsageQuery> usage_query(const std::string& from, const std::string& to, const std::string& group_by) {
  metering::UsageQuery query;
  const int64_t now = unix_ms();
  if (from.empty()) {
    query.from_ms = tenants::period_start_ms(tenants::BudgetPeriod::kMonth, now);
  } else {
    auto parsed = parse_time_ms(from, "from");
    if (!parsed) return std::unexpected(parsed.error());
    query.from_ms = *parsed;
  }
  if (to.empty()) {
    query.to_ms = now + 1;
  } else {
    auto parsed = parse_time_ms(to, "to");
    if (!parsed) return std::unexpected(parsed.error());
    query.to_ms = *parsed;
  }
  if (query.to_ms <= query.from_ms) return fail("to: must be after from");
  auto grouping = metering::parse_group_by(group_by);
  if (!grouping) return std::unexpected(grouping.error());
  query.group_by = *grouping;
  return query;
}

json usage_json(const metering::UsageQuery& query, const std::vector<metering::UsageTotals>& totals) {
  json data = json::array();
  metering::UsageTotals sum;
  for (const auto& t : totals) {
    data.push_back({{"group", t.group}, {"requests", t.requests}, {"prompt_tokens", t.prompt_tokens}, {"cached_tokens", t.cached_tokens},
                    {"cache_write_tokens", t.cache_write_tokens}, {"completion_tokens", t.completion_tokens}, {"cost_usd", metering::round_usd(t.cost_usd)}});
    sum.requests += t.requests;
    sum.prompt_tokens += t.prompt_tokens;
    sum.cached_tokens += t.cached_tokens;
    sum.cache_write_tokens += t.cache_write_tokens;
    sum.completion_tokens += t.completion_tokens;
    sum.cost_usd += t.cost_usd;
  }
  return {{"object", "usage"}, {"from", metering::utc_day(query.from_ms)}, {"from_ms", query.from_ms}, {"to_ms", query.to_ms},
          {"group_by", metering::group_by_name(query.group_by)}, {"data", data},
          {"total", {{"requests", sum.requests}, {"prompt_tokens", sum.prompt_tokens}, {"cached_tokens", sum.cached_tokens},
                     {"cache_write_tokens", sum.cache_write_tokens}, {"completion_tokens", sum.completion_tokens}, {"cost_usd", metering::round_usd(sum.cost_usd)}}}};
}

void register_admin_routes(http::Server& server, tenants::Tenants* tenants, metering::LedgerWriter* ledger) {
  if (tenants == nullptr) return;
  server.route("GET", "/admin/keys", [tenants, ledger](const http::Request& q, std::shared_ptr<http::Responder> r) {
    if (!require_admin(tenants, q, *r)) return;
    off_thread(ledger, [tenants, r] {
      auto keys = tenants->keys().list();
      if (!keys) return r->send(error(500, keys.error().message));
      json data = json::array();
      for (const auto& key : *keys) data.push_back(key.to_json());
      r->send(json_response(200, {{"object", "list"}, {"data", data}}));
    });
  });
  server.route("POST", "/admin/keys", [tenants, ledger](const http::Request& q, std::shared_ptr<http::Responder> r) {
    auto admin = require_admin(tenants, q, *r);
    if (!admin) return;
    json body = json::parse(q.body, nullptr, false);
    auto spec = tenants::KeySpec::from_json(body);
    if (!spec) return r->send(error(400, spec.error().message));
    off_thread(ledger, [tenants, r, spec = *spec, actor = admin->key_id] {
      auto created = tenants->keys().create(spec, actor);
      if (!created) return r->send(error(400, created.error().message));
      tenants->reload_if_changed();
      json out = created->first.to_json();
      out["key"] = created->second;
      r->send(json_response(201, out));
    });
  });
  auto change = [tenants, ledger](bool revoke) {
    return [tenants, ledger, revoke](const http::Request& q, std::shared_ptr<http::Responder> r) {
      auto admin = require_admin(tenants, q, *r);
      if (!admin) return;
      json body = json::parse(q.body, nullptr, false);
      if (!body.is_object() || !body.contains("key") || !body["key"].is_string()) {
        return r->send(error(400, "key: required (the id or name of the key)"));
      }
      auto spec = tenants::KeySpec::from_json(body);
      if (!spec) return r->send(error(400, spec.error().message));
      off_thread(ledger, [tenants, r, revoke, spec = *spec, target = body["key"].get<std::string>(), actor = admin->key_id] {
        auto key = revoke ? tenants->keys().revoke(target, actor) : tenants->keys().update(target, spec, actor);
        if (!key) return r->send(error(key.error().message.starts_with("no key") ? 404 : 400, key.error().message));
        tenants->reload_if_changed();
        r->send(json_response(200, key->to_json()));
      });
    };
  };
  server.route("POST", "/admin/keys/update", change(false));
  server.route("POST", "/admin/keys/revoke", change(true));
  server.route("GET", "/admin/audit", [tenants, ledger](const http::Request& q, std::shared_ptr<http::Responder> r) {
    if (!require_admin(tenants, q, *r)) return;
    const std::string limit_text = q.query_param("limit");
    const int64_t limit = limit_text.empty() ? 100 : std::clamp<int64_t>(std::strtoll(limit_text.c_str(), nullptr, 10), 1, 10'000);
    off_thread(ledger, [tenants, r, limit] {
      auto entries = tenants->keys().audit(limit);
      if (!entries) return r->send(error(500, entries.error().message));
      json data = json::array();
      for (const auto& e : *entries) {
        data.push_back({{"time_ms", e.time_ms}, {"actor", e.actor}, {"action", e.action}, {"key_id", e.key_id},
                        {"detail", json::parse(e.detail, nullptr, false)}});
      }
      r->send(json_response(200, {{"object", "list"}, {"data", data}}));
    });
  });
  server.route("GET", "/admin/usage", [tenants, ledger](const http::Request& q, std::shared_ptr<http::Responder> r) {
    if (!require_admin(tenants, q, *r)) return;
    answer_usage(ledger, q, std::move(r), {});
  });
  server.route("GET", "/v1/usage", [tenants, ledger](const http::Request& q, std::shared_ptr<http::Responder> r) {
    auto caller = authenticate(tenants, q);
    if (!caller) return r->send(error_response(false, caller.error()));
    if (!*caller) return r->send(error(401, "GET /v1/usage reports the calling key's own spend: send a key", "missing_api_key"));
    answer_usage(ledger, q, std::move(r), (*caller)->key_id);
  });
}

}  // namespace tern::api

namespace tern::api {

void register_lora_routes(http::Server& server, tenants::Tenants* tenants, const std::atomic<router::LoraAdapters*>& adapters) {
  // Changing what a server serves is an admin's act once keys exist. Who did it goes to the log: the
  // admin key's id (nullopt: refused, the answer is sent).
  auto caller = [tenants](const http::Request& q, http::Responder& r) -> std::optional<std::string> {
    if (tenants == nullptr || !tenants->auth_required()) return std::string("a client of the open server");
    auto admin = require_admin(tenants, q, r);
    if (!admin) return std::nullopt;
    return "key " + admin->key_id;
  };
  server.route("POST", "/v1/load_lora_adapter", [&adapters, caller](const http::Request& q, std::shared_ptr<http::Responder> r) {
    auto actor = caller(q, *r);
    if (!actor) return;
    router::LoraAdapters* lora = adapters.load();
    if (lora == nullptr) return r->send(error(503, "the server is still loading its models", "loading"));
    json body = json::parse(q.body, nullptr, false);
    if (!body.is_object() || !body.contains("lora_name") || !body["lora_name"].is_string() || !body.contains("lora_path") ||
        !body["lora_path"].is_string()) {
      return r->send(error(400, "lora_name and lora_path (strings) are required"));
    }
    if (body.contains("base_model") && !body["base_model"].is_string()) return r->send(error(400, "base_model must be a string"));
    if (body.contains("scale") && !body["scale"].is_number()) return r->send(error(400, "scale must be a number"));
    lora->run([lora, r, actor = *actor, name = body["lora_name"].get<std::string>(), path = body["lora_path"].get<std::string>(),
               base = body.value("base_model", std::string()), scale = body.value("scale", 1.0)] {
      auto ok = lora->load(name, path, base, static_cast<float>(scale));
      if (!ok) {
        std::fprintf(stderr, "tern serve: LoRA adapter '%s' from %s not loaded (asked by %s): %s\n", name.c_str(), path.c_str(), actor.c_str(),
                     ok.error().message.c_str());
        return r->send(error(400, ok.error().message, "lora_load_failed"));
      }
      std::fprintf(stderr, "tern serve: loaded LoRA adapter '%s' from %s%s, scale %g (asked by %s)\n", name.c_str(), path.c_str(),
                   base.empty() ? "" : (" on '" + base + "'").c_str(), scale, actor.c_str());
      r->send(json_response(200, {{"object", "lora_adapter"}, {"name", name}, {"path", path},
                                  {"message", fmt::format("Success: LoRA adapter '{}' added successfully.", name)}}));
    });
  });
  server.route("POST", "/v1/unload_lora_adapter", [&adapters, caller](const http::Request& q, std::shared_ptr<http::Responder> r) {
    auto actor = caller(q, *r);
    if (!actor) return;
    router::LoraAdapters* lora = adapters.load();
    if (lora == nullptr) return r->send(error(503, "the server is still loading its models", "loading"));
    json body = json::parse(q.body, nullptr, false);
    if (!body.is_object() || !body.contains("lora_name") || !body["lora_name"].is_string()) {
      return r->send(error(400, "lora_name (a string) is required"));
    }
    lora->run([lora, r, actor = *actor, name = body["lora_name"].get<std::string>()] {
      auto ok = lora->unload(name, std::chrono::minutes(5));
      if (!ok) {
        std::fprintf(stderr, "tern serve: unloading LoRA adapter '%s' (asked by %s): %s\n", name.c_str(), actor.c_str(), ok.error().message.c_str());
        return r->send(error(ok.error().message.starts_with("no LoRA") ? 404 : 409, ok.error().message, "lora_unload_failed"));
      }
      std::fprintf(stderr, "tern serve: unloaded LoRA adapter '%s' (asked by %s)\n", name.c_str(), actor.c_str());
      r->send(json_response(200, {{"object", "lora_adapter"}, {"name", name}, {"deleted", true},
                                  {"message", fmt::format("Success: LoRA adapter '{}' removed successfully.", name)}}));
    });
  });
}

}  // namespace tern::api
