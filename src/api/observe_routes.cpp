#include "api/observe_routes.h"

#include <fmt/format.h>

#include <charconv>

#include "api/admin.h"
#include "api/gateway.h"
#include "observe/console_assets.h"
#include "wire/json_util.h"

namespace tern::api {
namespace {

using json = nlohmann::json;

http::Response not_found(std::string message) { return error_response(false, wire::server_error(404, std::move(message), "not_found")); }

/// ?limit=N within 1..max (default `fallback`).
size_t limit_param(const http::Request& q, size_t fallback, size_t max) {
  const std::string text = q.query_param("limit");
  size_t value = fallback;
  if (!text.empty()) std::from_chars(text.data(), text.data() + text.size(), value);
  return std::clamp<size_t>(value, 1, max);
}

json recent_json(const observe::TraceStore& traces, size_t limit) {
  json out = json::array();
  for (const auto& record : traces.recent(limit)) out.push_back(observe::trace_summary_json(*record));
  return out;
}

}  // namespace

void register_observe_routes(http::Server& server, tenants::Tenants* tenants, const Gateway::Observers& observers) {
  server.route("GET", "/console", [](const http::Request&, std::shared_ptr<http::Responder> r) {
    r->send({.status = 200, .body = std::string(observe::console_html()), .content_type = "text/html; charset=utf-8",
             .headers = {{"Cache-Control", "no-cache"}, {"X-Content-Type-Options", "nosniff"},
                         {"Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:"}},
             .close_connection = false});
  });
  // Whether the page must ask for a key before its first data request (no data here: open to anyone).
  server.route("GET", "/console/auth", [tenants](const http::Request&, std::shared_ptr<http::Responder> r) {
    r->send(wire::json_response(200, {{"keys_required", tenants != nullptr && tenants->auth_required()}}));
  });
  server.route("GET", "/admin/console/data", [tenants, &observers](const http::Request& q, std::shared_ptr<http::Responder> r) {
    if (!admit_admin_or_open(tenants, q, *r)) return;
    const observe::TraceStore* traces = observers.traces;
    const observe::LiveStats* live = observers.live;
    if (live == nullptr) return r->send(not_found("the console's figures are off on this server"));
    double since = 0;
    if (const std::string text = q.query_param("since"); !text.empty()) since = std::strtod(text.c_str(), nullptr);
    json out = live->snapshot(since);
    out["recent"] = traces != nullptr ? recent_json(*traces, 50) : json::array();
    out["traces"] = traces != nullptr;
    out["keys"] = tenants != nullptr && tenants->auth_required();
    r->send(wire::json_response(200, out));
  });
  server.route("GET", "/admin/requests", [tenants, &observers](const http::Request& q, std::shared_ptr<http::Responder> r) {
    if (!admit_admin_or_open(tenants, q, *r)) return;
    const observe::TraceStore* traces = observers.traces;
    if (traces == nullptr) return r->send(not_found("traces are off on this server (tern serve --traces N keeps the last N)"));
    r->send(wire::json_response(200, {{"object", "list"}, {"data", recent_json(*traces, limit_param(q, 100, traces->capacity()))}}));
  });
  server.route("GET", "/admin/requests/*", [tenants, &observers](const http::Request& q, std::shared_ptr<http::Responder> r) {
    if (!admit_admin_or_open(tenants, q, *r)) return;
    const observe::TraceStore* traces = observers.traces;
    if (traces == nullptr) return r->send(not_found("traces are off on this server (tern serve --traces N keeps the last N)"));
    const std::string id = q.path.substr(std::string_view("/admin/requests/").size());
    auto record = traces->find(id);
    if (!record) {
      return r->send(not_found(fmt::format("no trace of request '{}': it is unknown, still running, or older than the last {} requests kept",
                                           id.substr(0, 128), traces->capacity())));
    }
    r->send(wire::json_response(200, observe::trace_json(*record)));
  });
}

}  // namespace tern::api
