#pragma once
// The admin API (admin keys only) and a key's own usage:
//   GET  /admin/keys                     every key (never secrets or hashes)
//   POST /admin/keys                     create: {name, org?, models?, rpm?, tpm?, max_parallel?,
//                                        budget_usd?, budget_period?, expires?, admin?} -> the secret, once
//   POST /admin/keys/update              {key: id or name, ...fields to change}
//   POST /admin/keys/revoke              {key: id or name}
//   GET  /admin/audit?limit=N            who created, changed or revoked what, newest first
//   GET  /admin/usage?from&to&group_by&key   spend from the ledger
//   GET  /v1/usage?from&to&group_by      the calling key's own spend
//   POST /v1/load_lora_adapter          {lora_name, lora_path, base_model?, scale?} (vLLM's endpoint)
//   POST /v1/unload_lora_adapter        {lora_name}: answers once the adapter's requests finished
// (the two LoRA endpoints are open on a server without keys, admin-only once a key exists).
// Key changes go through the same KeyStore as `tern keys`, audited with the admin key's id as actor.
// Database work runs on the ledger's query thread, never on an I/O thread.

#include <atomic>

#include "http/server.h"
#include "router/lora_adapters.h"
#include "metering/ledger_writer.h"
#include "tenants/tenants.h"

namespace tern::api {

void register_admin_routes(http::Server& server, tenants::Tenants* tenants, metering::LedgerWriter* ledger);

/// The LoRA endpoints; `adapters` is read per request (null until the models are set up: 503).
void register_lora_routes(http::Server& server, tenants::Tenants* tenants, const std::atomic<router::LoraAdapters*>& adapters);

/// Admin endpoints that are open on a server without keys (LoRA loading, traces, the console): true
/// when the caller may go on; else the refusal (401 without a key, 403 for a key that is not an
/// admin's) was sent.
bool admit_admin_or_open(tenants::Tenants* tenants, const http::Request& request, http::Responder& responder);

/// A usage query from request parameters (from, to: "2026-11-01", "2026-11-01T12:00:00Z" or Unix
/// seconds; from defaults to the start of this month, to to now; group_by: key|org|model|deployment|day).
Result<metering::UsageQuery> usage_query(const std::string& from, const std::string& to, const std::string& group_by);
/// The JSON both usage endpoints answer with.
nlohmann::json usage_json(const metering::UsageQuery& query, const std::vector<metering::UsageTotals>& totals);

}  // namespace tern::api
