#pragma once
// What an operator looks at while tern serve runs (docs/observability.md):
//   GET /console                  the web console (one page, compiled into the binary; it asks for an
//                                 admin key once keys exist and polls the endpoint below)
//   GET /console/auth             whether the page needs an admin key (the server has keys)
//   GET /admin/console/data?since=T   the console's aggregates (observe/live_stats.h) and the latest requests
//   GET /admin/requests?limit=N   the latest finished requests, newest first (no timelines)
//   GET /admin/requests/{id}      one request's timeline (observe/trace.h), by its x-request-id
// The admin endpoints are open on a server without keys and admin-only once a key exists; the page
// itself holds no data and is served to anyone.

#include "api/gateway.h"

namespace tern::api {

/// `observers` is read per request (the gateway's, set before the server starts); without a trace
/// store or live figures those endpoints answer 404 saying so.
void register_observe_routes(http::Server& server, tenants::Tenants* tenants, const Gateway::Observers& observers);

}  // namespace tern::api
