#pragma once
// The API surface of `tern serve`: the OpenAI routes (/v1/chat/completions, /v1/completions,
// /v1/models, /v1/usage), the Anthropic route (/v1/messages), the admin API (/admin/..., admin.h) and
// the operational ones (/health, /ready, /metrics), registered on the HTTP server's route table.
// Each generation request is authenticated and admitted by the tenants layer, parsed by its schema
// adapter into a neutral wire::Request, handed to the router, and the router's neutral events are
// rendered back by the same adapter:
//
//   http::Server ─► key (tenants/) ─► parse (openai/ | anthropic/) ─► allow-list, limits, budget
//     ─► Router::submit ─► Provider (local | remote)
//   Responder ◄── Renderer (openai/ | anthropic/) ◄── events, run on the connection's strand
//                      ▲ the last bytes wait for the request's ledger row to be committed
//
// A stream's head is sent with the first event, so a deployment that fails before answering can be
// retried or replaced without the client seeing anything but the answer.

#include <atomic>
#include <functional>
#include <map>
#include <string>

#include "http/server.h"
#include "metering/ledger_writer.h"
#include "observe/live_stats.h"
#include "observe/otlp_exporter.h"
#include "observe/request_log.h"
#include "observe/trace.h"
#include "router/lora_adapters.h"
#include "router/router.h"
#include "tenants/tenants.h"

namespace tern::api {

class Gateway {
 public:
  /// Registers the routes on `server` (before server.start()). `tenants` (keys, limits, budgets) and
  /// `ledger` may be null: an open server, and no ledger.
  Gateway(http::Server& server, tenants::Tenants* tenants, metering::LedgerWriter* ledger);

  /// Makes the models servable; until then generation answers 503 and /ready says "loading".
  void set_router(router::Router* router) { router_.store(router); }
  /// Extra Prometheus text for /metrics (the engines' own metrics).
  void set_metrics_source(std::function<std::string()> source) { metrics_source_ = std::move(source); }
  /// Enables /v1/load_lora_adapter and /v1/unload_lora_adapter.
  void set_lora_adapters(router::LoraAdapters* adapters) { lora_.store(adapters); }
  /// Also exports the engine metrics vLLM has under vLLM's names (observe/metrics_compat.h).
  void set_vllm_metrics(bool on) { vllm_metrics_ = on; }
  /// Where each finished generation request goes besides the ledger; any may be null (none). Set
  /// before the server starts.
  struct Observers {
    observe::RequestLog* request_log = nullptr;  ///< a line per request
    observe::TraceStore* traces = nullptr;       ///< timelines for GET /admin/requests/{id} and the console
    observe::OtlpExporter* otlp = nullptr;       ///< the same timelines, to an OpenTelemetry collector
    observe::LiveStats* live = nullptr;          ///< the console's aggregates
  };
  void set_observers(Observers observers) { observers_ = observers; }
  /// Where each org's and key's requests may run (by org name; by key id or name); set before start.
  void set_placement_policies(std::map<std::string, wire::PlacementPolicy> by_org, std::map<std::string, wire::PlacementPolicy> by_key) {
    org_policies_ = std::move(by_org);
    key_policies_ = std::move(by_key);
  }

 private:
  void generate(const http::Request& request, std::shared_ptr<http::Responder> responder, bool is_anthropic, wire::RequestKind kind);
  std::string metrics_text() const;

  http::Server& server_;
  tenants::Tenants* tenants_;
  metering::LedgerWriter* ledger_;
  Observers observers_;
  std::map<std::string, wire::PlacementPolicy> org_policies_, key_policies_;
  bool vllm_metrics_ = false;
  std::atomic<router::Router*> router_{nullptr};
  std::atomic<router::LoraAdapters*> lora_{nullptr};
  std::function<std::string()> metrics_source_;
};

/// An error in the client's schema (OpenAI's, or Anthropic's on /v1/messages), before anything was sent.
http::Response error_response(bool is_anthropic, const wire::ApiError& error);

/// The caller of a request from its Authorization or x-api-key header: nullopt on an open server; an
/// error (401) when a key is needed and missing or wrong.
std::expected<std::optional<tenants::Principal>, wire::ApiError> authenticate(tenants::Tenants* tenants, const http::Request& request);

}  // namespace tern::api
