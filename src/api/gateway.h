#pragma once
// The API surface of `tern serve`: the OpenAI routes (/v1/chat/completions, /v1/completions,
// /v1/models), the Anthropic route (/v1/messages) and the operational ones (/health, /ready,
// /metrics), registered on the HTTP server's route table. Each generation request is parsed by its
// schema adapter into a neutral api::Request, handed to the router, and the router's neutral events
// are rendered back by the same adapter:
//
//   http::Server ─► parse (openai/ | anthropic/) ─► Router::submit ─► Provider (local | remote)
//   Responder ◄── Renderer (openai/ | anthropic/) ◄── events, run on the connection's strand
//
// A stream's head is sent with the first event, so a deployment that fails before answering can be
// retried or replaced without the client seeing anything but the answer.

#include <atomic>
#include <functional>
#include <string>

#include "http/server.h"
#include "router/router.h"

namespace tern::api {

class Gateway {
 public:
  /// Registers the routes on `server` (before server.start()).
  explicit Gateway(http::Server& server);

  /// Makes the models servable; until then generation answers 503 and /ready says "loading".
  void set_router(router::Router* router) { router_.store(router); }
  /// Extra Prometheus text for /metrics (the engines' own metrics).
  void set_metrics_source(std::function<std::string()> source) { metrics_source_ = std::move(source); }

 private:
  void generate(const http::Request& request, std::shared_ptr<http::Responder> responder, bool is_anthropic, RequestKind kind);
  std::string metrics_text() const;

  http::Server& server_;
  std::atomic<router::Router*> router_{nullptr};
  std::function<std::string()> metrics_source_;
};

}  // namespace tern::api
