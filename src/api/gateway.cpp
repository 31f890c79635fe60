#include "api/gateway.h"
#include "api/json_util.h"

#include <fmt/format.h>

#include "api/anthropic/messages.h"
#include "api/openai/request.h"
#include "api/openai/response.h"
#include "util/prometheus.h"

namespace tern::api {
namespace {

using json = nlohmann::json;

http::Response json_response(int status, const json& body) {
  return {.status = status, .body = dump_json(body), .content_type = "application/json", .headers = {}, .close_connection = false};
}

/// One generation request from the router's first event to its last, on the connection's strand.
class Exchange {
 public:
  Exchange(std::unique_ptr<Renderer> renderer, std::shared_ptr<http::Responder> responder, bool stream)
      : renderer_(std::move(renderer)), responder_(std::move(responder)), stream_(stream) {}

  void on_event(Event&& event) {
    if (done_) return;
    if (stream_) {
      if (!started_) {
        if (event.finished && event.error && event.text.empty()) return finish_with(renderer_->error_response(*event.error));
        started_ = true;
        responder_->start_stream();
        responder_->write(renderer_->stream_start(event.model));
      }
      responder_->write(renderer_->stream_event(event));
      if (event.finished) {
        done_ = true;
        responder_->end_stream();
      }
      return;
    }
    text_ += event.text;
    for (auto& lp : event.logprobs) logprobs_.push_back(std::move(lp));
    if (!event.finished) return;
    if (event.error) return finish_with(renderer_->error_response(*event.error));
    finish_with({.status = 200, .body = renderer_->full_response(text_, logprobs_, event), .content_type = "application/json",
                 .headers = {}, .close_connection = false});
  }

 private:
  void finish_with(http::Response response) {
    done_ = true;
    responder_->send(std::move(response));
  }

  std::unique_ptr<Renderer> renderer_;
  std::shared_ptr<http::Responder> responder_;
  bool stream_;
  bool started_ = false;
  bool done_ = false;
  std::string text_;
  std::vector<TokenLogprob> logprobs_;
};

/// An error in the client's schema (before anything was sent).
http::Response error_response(bool is_anthropic, const ApiError& error) {
  return json_error_response(error, is_anthropic ? AnthropicRenderer::error_json(error) : OpenAiRenderer::error_json(error));
}

}  // namespace

Gateway::Gateway(http::Server& server) : server_(server) {
  server.set_error_renderer([](int status, std::string message, std::string code) {
    return error_response(false, server_error(status, std::move(message), std::move(code)));
  });
  server.route("GET", "/health", [](const http::Request&, std::shared_ptr<http::Responder> r) { r->send(json_response(200, {{"status", "ok"}})); }, true);
  server.route("GET", "/ready", [this](const http::Request&, std::shared_ptr<http::Responder> r) {
    router::Router* router = router_.load();
    if (server_.is_draining()) return r->send(json_response(503, {{"status", "draining"}}));
    if (router == nullptr) return r->send(json_response(503, {{"status", "loading"}}));
    json names = json::array();
    for (const auto& m : router->models()) names.push_back(m.name);
    r->send(json_response(200, {{"status", "ready"}, {"model", names.empty() ? json(nullptr) : names[0]}, {"models", names}}));
  }, true);
  server.route("GET", "/metrics", [this](const http::Request&, std::shared_ptr<http::Responder> r) {
    r->send({.status = 200, .body = metrics_text(), .content_type = "text/plain; version=0.0.4; charset=utf-8", .headers = {},
             .close_connection = false});
  }, true);
  server.route("GET", "/v1/models", [this](const http::Request&, std::shared_ptr<http::Responder> r) {
    json data = json::array();
    if (router::Router* router = router_.load(); router != nullptr) {
      for (const auto& m : router->models()) {
        json entry = {{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "tern"}, {"deployments", m.deployments}};
        if (m.max_model_len > 0) entry["max_model_len"] = m.max_model_len;
        data.push_back(std::move(entry));
      }
    }
    r->send(json_response(200, {{"object", "list"}, {"data", data}}));
  });
  server.route("POST", "/v1/chat/completions", [this](const http::Request& q, std::shared_ptr<http::Responder> r) {
    generate(q, std::move(r), false, RequestKind::kChat);
  });
  server.route("POST", "/v1/completions", [this](const http::Request& q, std::shared_ptr<http::Responder> r) {
    generate(q, std::move(r), false, RequestKind::kCompletion);
  });
  server.route("POST", "/v1/messages", [this](const http::Request& q, std::shared_ptr<http::Responder> r) {
    generate(q, std::move(r), true, RequestKind::kChat);
  });
}

void Gateway::generate(const http::Request& http_request, std::shared_ptr<http::Responder> responder, bool is_anthropic, RequestKind kind) {
  auto refuse = [&](const ApiError& error) {
    http::Response response = error_response(is_anthropic, error);
    if (error.code == "shutting_down") response.close_connection = true;
    responder->send(std::move(response));
  };
  if (server_.is_draining()) return refuse(server_error(503, "the server is shutting down", "shutting_down"));
  router::Router* router = router_.load();
  if (router == nullptr) return refuse(server_error(503, "the model is still loading; see GET /ready", "loading"));
  auto parsed = is_anthropic ? parse_anthropic_request(http_request.body) : parse_openai_request(kind, http_request.body);
  if (!parsed) return refuse(parsed.error());
  std::unique_ptr<Renderer> renderer = is_anthropic ? std::unique_ptr<Renderer>(std::make_unique<AnthropicRenderer>(*parsed))
                                                    : std::make_unique<OpenAiRenderer>(*parsed);
  auto exchange = std::make_shared<Exchange>(std::move(renderer), responder, parsed->stream);
  std::weak_ptr<http::Responder> weak_responder = responder;
  auto sink = [exchange, weak_responder](Event&& event) {
    if (auto r = weak_responder.lock()) {
      r->run([exchange, event = std::move(event)]() mutable { exchange->on_event(std::move(event)); });
    }
  };
  auto call = router->submit(*parsed, std::move(sink));
  if (!call) return refuse(call.error());
  // The connection holds the call (and so its retries and fallbacks) until the exchange ends; a client
  // that leaves first cancels it.
  responder->on_disconnect([call = *call] { call->cancel(); });
}

std::string Gateway::metrics_text() const {
  std::string out = metrics_source_ ? metrics_source_() : std::string();
  prometheus_header(out, "http_connections_open", "gauge", "Open client connections.");
  out += fmt::format("tern:http_connections_open {}\n", server_.num_open_connections());
  if (router::Router* router = router_.load(); router != nullptr) {
    const auto stats = router->stats();
    auto family = [&](const char* name, const char* type, const char* help, auto value) {
      prometheus_header(out, name, type, help);
      for (const auto& s : stats) {
        out += fmt::format("tern:{}{{deployment=\"{}\",kind=\"{}\"}} {}\n", name, prometheus_label(s.name), s.kind, value(s));
      }
    };
    family("deployment_outstanding", "gauge", "Requests in flight on a deployment.", [](const auto& s) { return s.outstanding; });
    family("deployment_requests_total", "counter", "Attempts sent to a deployment (retries included).", [](const auto& s) { return s.requests; });
    family("deployment_failures_total", "counter", "Attempts that failed (connect, 429, 5xx, timeout).", [](const auto& s) { return s.failures; });
    family("deployment_ttft_ewma_seconds", "gauge", "Moving average of time to first event.", [](const auto& s) { return s.ttft_ewma_s; });
    family("deployment_breaker_open", "gauge", "1 while the deployment's circuit breaker is open or half-open.",
           [](const auto& s) { return s.breaker == "closed" ? 0 : 1; });
  }
  return out;
}

}  // namespace tern::api
