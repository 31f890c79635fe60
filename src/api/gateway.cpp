#include "api/gateway.h"

#include <fmt/format.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <random>

#include "api/admin.h"
#include "api/observe_routes.h"
#include "observe/metrics_compat.h"
#include "wire/anthropic/messages.h"
#include "wire/json_util.h"
#include "wire/openai/request.h"
#include "wire/openai/response.h"
#include "util/prometheus.h"
#include "util/clock.h"

namespace tern::api {

using namespace tern::wire;  // the neutral types and the schema codecs
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// A client- or upstream-supplied string as a ledger field: at most 200 bytes, cut at a character
/// boundary, control characters (a JSON "\u0000" included) replaced — a database must never refuse a
/// batch of rows because of one request's model name.
std::string ledger_text(std::string_view text) {
  if (text.size() > 200) {
    size_t end = 200;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    text = text.substr(0, end);
  }
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

/// What a request's prompt will cost in tokens, before anything tokenized it: ~4 bytes a token, plus
/// the template's few tokens per message. Only reservations use it; they settle with the real count.
int64_t estimate_prompt_tokens(const Request& request) {
  if (request.kind == RequestKind::kCompletion) {
    return static_cast<int64_t>(request.prompt.value_or("").size() / 4 + request.prompt_tokens.size());
  }
  int64_t bytes = 0;
  for (const auto& message : request.messages) {
    if (auto it = message.find("content"); it != message.end() && it->is_string()) bytes += static_cast<int64_t>(it->get_ref<const std::string&>().size());
    bytes += 16;
  }
  return bytes / 4;
}

/// The client's x-request-id if it is 1-128 characters of letters, digits and ._:/+=-; else empty.
std::string client_request_id(const http::Request& request) {
  const std::string_view id = request.header("x-request-id");
  if (id.empty() || id.size() > 128) return {};
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("._:/+=-").find(c) == std::string_view::npos) return {};
  }
  return std::string(id);
}

std::string fresh_request_id() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 random{std::random_device{}()};
  return fmt::format("req-{:012x}{:04x}", random() & 0xffffffffffffULL, counter.fetch_add(1) & 0xffff);
}

/// For the request log's prefix_hash: the system messages' text (chat), which requests sharing a system
/// prompt share; empty when there is none.
std::string system_prompt_hash(const Request& request) {
  std::string system;
  for (const auto& message : request.messages) {
    if (!message.is_object() || message.value("role", "") != "system") continue;
    system += message.contains("content") ? message["content"].dump() : std::string();
  }
  return system.empty() ? std::string() : observe::short_hash(system);
}

/// With --log-content: what the client sent to generate from.
nlohmann::json request_content(const Request& request) {
  if (request.kind != RequestKind::kCompletion) return nlohmann::json::parse(request.messages.dump());
  if (request.prompt) return *request.prompt;
  return request.prompt_tokens;
}

/// Hands a finished request (served, failed or refused) to the trace store, the OTLP exporter and the
/// console's aggregates. `record` carries the request's own fields (ids, operation, what it asked for).
void observe_finished(const Gateway::Observers& observers, const metering::LedgerRow& row, const observe::Trace* trace,
                      observe::TraceRecord record) {
  if (observers.live != nullptr) {
    // Metric and console labels name deployments that answered (a bounded set), never what a client typed.
    observers.live->on_request({.model = row.deployment.empty() ? std::string("-") : row.model, .deployment = row.deployment,
                                .key_id = row.key_id, .org = row.org, .status = row.status, .prompt_tokens = row.prompt_tokens,
                                .cached_tokens = row.cached_tokens, .completion_tokens = row.completion_tokens, .cost_usd = row.cost_usd});
  }
  if (trace == nullptr || (observers.traces == nullptr && observers.otlp == nullptr)) return;
  record.request_id = row.request_id;
  record.context = trace->context();
  record.arrival_unix_s = static_cast<double>(row.time_ms) / 1000.0;
  record.e2e_ms = row.e2e_ms;
  record.ttft_ms = row.ttft_ms > 0 ? row.ttft_ms : -1;
  record.model = row.model;
  record.deployment = row.deployment;
  record.key_id = row.key_id;
  record.org = row.org;
  record.finish_reason = row.finish_reason;
  record.status = row.status;
  record.prompt_tokens = row.prompt_tokens;
  record.cached_tokens = row.cached_tokens;
  record.completion_tokens = row.completion_tokens;
  record.cost_usd = row.cost_usd;
  record.events = trace->events();
  record.events.push_back({.name = "finished", .at_ms = row.e2e_ms, .duration_ms = -1,
                           .attributes = {{"status", row.status}, {"finish_reason", row.finish_reason}}});
  auto frozen = std::make_shared<const observe::TraceRecord>(std::move(record));
  if (observers.traces != nullptr) observers.traces->put(frozen);
  if (observers.otlp != nullptr) observers.otlp->export_record(std::move(frozen));
}

/// One generation request from admission to its ledger row. Events arrive on provider threads
/// (accept); rendering runs on the connection's strand (render). The row is written once: at the
/// last event, or — if no last event ever came (a cancelled upstream) — when the exchange is dropped.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  struct Accounting {
    metering::LedgerWriter* ledger = nullptr;
    tenants::Tenants* tenants = nullptr;
    std::unique_ptr<tenants::Admission> admission;
    metering::LedgerRow row;  ///< time, request id, key, org and model filled in
    Clock::time_point start;
    Gateway::Observers observers;
    observe::RequestLogEntry log_entry;          ///< arrival, prefix hash, session, content filled in
    std::shared_ptr<observe::Trace> trace;       ///< null unless traces are kept or exported
    observe::TraceRecord trace_record;           ///< operation, api and what the request asked for
  };

  Exchange(std::unique_ptr<Renderer> renderer, std::shared_ptr<http::Responder> responder, bool stream, http::Headers headers, Accounting accounting)
      : renderer_(std::move(renderer)), responder_(std::move(responder)), stream_(stream), headers_(std::move(headers)),
        accounting_(std::move(accounting)),
        logs_content_(accounting_.observers.request_log != nullptr && accounting_.observers.request_log->options().log_content) {}

  ~Exchange() {
    if (!recorded_) record(nullptr);
  }

  void client_left() { client_left_.store(true); }
  /// The request never started (the router refused it): the caller records that answer itself.
  void discard() { recorded_ = true; }

  /// On the provider's thread, in event order.
  void accept(Event&& event) {
    if (logs_content_) output_ += event.text;
    if (first_event_at_ == Clock::time_point{} && (!event.text.empty() || !event.tool_calls.empty() || event.finished)) first_event_at_ = Clock::now();
    if (!event.finished) return post(std::move(event));
    record(&event);
    if (accounting_.ledger == nullptr) return post(std::move(event));
    // The last bytes go out once the row is durable: a client that saw its whole response is billed.
    accounting_.ledger->append(accounting_.row, [self = shared_from_this(), event = std::move(event)]() mutable { self->post(std::move(event)); });
  }

 private:
  void post(Event&& event) {
    // The responder is a handle (the connection behind it is weak): holding it keeps nothing alive.
    responder_->run([self = shared_from_this(), event = std::move(event)]() mutable { self->render(std::move(event)); });
  }

  /// Fills and settles the row from the last event (null: none came); appends it unless the caller does.
  void record(const Event* last) {
    recorded_ = true;
    metering::LedgerRow& row = accounting_.row;
    const auto now = Clock::now();
    row.e2e_ms = std::chrono::duration<double, std::milli>(now - accounting_.start).count();
    if (first_event_at_ != Clock::time_point{}) row.ttft_ms = std::chrono::duration<double, std::milli>(first_event_at_ - accounting_.start).count();
    Usage usage;
    if (last != nullptr) {
      usage = last->usage;
      row.deployment = ledger_text(last->deployment);
      row.finish_reason = ledger_text(last->finish_reason);
      row.status = last->error ? last->error->status : 200;
    } else {
      row.finish_reason = "abort";
      row.status = 499;
    }
    if (client_left_.load() && row.status == 200) row.status = 499;  // the client did not get it all
    row.prompt_tokens = usage.prompt_tokens;
    row.cached_tokens = usage.cached_tokens;
    row.cache_write_tokens = usage.cache_write_tokens;
    row.completion_tokens = usage.completion_tokens;
    row.cost_usd = usage.cost_usd.value_or(0);
    if (accounting_.admission) accounting_.admission->settle(usage.prompt_tokens + usage.completion_tokens, row.cost_usd);
    // Metric labels name models that answered (a bounded set), never what a client typed.
    if (accounting_.tenants && !row.key_id.empty()) {
      accounting_.tenants->count_request(row.key_id, last != nullptr && !last->model.empty() ? last->model : "-", usage, row.status);
    }
    if (last == nullptr && accounting_.ledger != nullptr) accounting_.ledger->append(row);
    if (accounting_.observers.request_log != nullptr) {
      observe::RequestLogEntry& entry = accounting_.log_entry;
      entry.row = row;
      if (last != nullptr) {
        entry.queued_ms = last->queued_ms;
        entry.adapter = ledger_text(last->adapter);
        entry.region = ledger_text(last->region);
      }
      entry.output = std::move(output_);
      accounting_.observers.request_log->append(std::move(entry));
    }
    if (last != nullptr && last->error) accounting_.trace_record.error = last->error->message;
    if (last != nullptr) {
      accounting_.trace_record.adapter = last->adapter;
      accounting_.trace_record.region = last->region;
    }
    if (last == nullptr && accounting_.trace) accounting_.trace->add("client_left", {});
    observe_finished(accounting_.observers, row, accounting_.trace.get(), std::move(accounting_.trace_record));
  }

  /// On the connection's strand.
  void render(Event&& event) {
    if (done_) return;
    if (stream_) {
      if (!started_) {
        if (event.finished && event.error && event.text.empty()) return finish_with(renderer_->error_response(*event.error));
        started_ = true;
        responder_->start_stream("text/event-stream", headers_);
        responder_->write(renderer_->stream_start(event));
      }
      responder_->write(renderer_->stream_event(event));
      if (event.finished) {
        done_ = true;
        responder_->end_stream();
      }
      return;
    }
    reply_.add(event);
    if (!event.finished) return;
    if (event.error) return finish_with(renderer_->error_response(*event.error));
    finish_with({.status = 200, .body = renderer_->full_response(reply_, event), .content_type = "application/json",
                 .headers = headers_, .close_connection = false});
  }

  void finish_with(http::Response response) {
    done_ = true;
    if (response.status != 200) {  // an error answer carries the request id too (a 200 already has headers_)
      for (const auto& h : headers_) {
        if (h.first == "x-request-id") response.headers.push_back(h);
      }
    }
    responder_->send(std::move(response));
  }

  std::unique_ptr<Renderer> renderer_;
  std::shared_ptr<http::Responder> responder_;
  bool stream_;
  http::Headers headers_;  // x-request-id, x-ratelimit-*
  Accounting accounting_;
  const bool logs_content_;  // the request log keeps the output text
  std::atomic<bool> client_left_{false};
  // Provider-thread state (events of one request arrive in order, one at a time).
  Clock::time_point first_event_at_{};
  bool recorded_ = false;
  std::string output_;  // with logs_content_
  // Strand state.
  bool started_ = false;
  bool done_ = false;
  Reply reply_;
};

}  // namespace

http::Response error_response(bool is_anthropic, const ApiError& error) {
  return json_error_response(error, is_anthropic ? AnthropicRenderer::error_json(error) : OpenAiRenderer::error_json(error));
}

std::expected<std::optional<tenants::Principal>, ApiError> authenticate(tenants::Tenants* tenants, const http::Request& request) {
  if (tenants == nullptr) return std::nullopt;
  return tenants->authenticate(request.header("authorization"), request.header("x-api-key"));
}

Gateway::Gateway(http::Server& server, tenants::Tenants* tenants, metering::LedgerWriter* ledger)
    : server_(server), tenants_(tenants), ledger_(ledger) {
  server.set_error_renderer([](int status, std::string message, std::string code) {
    return error_response(false, server_error(status, std::move(message), std::move(code)));
  });
  server.route("GET", "/health", [](const http::Request&, std::shared_ptr<http::Responder> r) { r->send(json_response(200, {{"status", "ok"}})); });
  server.route("GET", "/ready", [this](const http::Request&, std::shared_ptr<http::Responder> r) {
    router::Router* router = router_.load();
    if (server_.is_draining()) return r->send(json_response(503, {{"status", "draining"}}));
    if (router == nullptr) return r->send(json_response(503, {{"status", "loading"}}));
    json names = json::array();
    for (const auto& m : router->models()) names.push_back(m.name);
    r->send(json_response(200, {{"status", "ready"}, {"model", names.empty() ? json(nullptr) : names[0]}, {"models", names}}));
  });
  server.route("GET", "/metrics", [this](const http::Request&, std::shared_ptr<http::Responder> r) {
    r->send({.status = 200, .body = metrics_text(), .content_type = "text/plain; version=0.0.4; charset=utf-8", .headers = {},
             .close_connection = false});
  });
  server.route("GET", "/v1/models", [this](const http::Request& q, std::shared_ptr<http::Responder> r) {
    auto caller = authenticate(tenants_, q);
    if (!caller) return r->send(error_response(false, caller.error()));
    json data = json::array();
    if (router::Router* router = router_.load(); router != nullptr) {
      for (const auto& m : router->models()) {
        json entry = {{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "tern"}, {"deployments", m.deployments}};
        if (m.max_model_len > 0) entry["max_model_len"] = m.max_model_len;
        if (!m.parent.empty()) entry["parent"] = m.parent;  // a LoRA adapter: vLLM's field for its base model
        if (!*caller || tenants_->may_use(**caller, m.name)) data.push_back(entry);
        // Each alias answers requests too, so it is listed, marked with the name it stands for.
        for (const auto& alias : m.aliases) {
          if (*caller && !tenants_->may_use(**caller, alias)) continue;
          entry["id"] = alias;
          entry["alias_of"] = m.name;
          data.push_back(entry);
        }
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
  register_admin_routes(server, tenants_, ledger_);
  register_observe_routes(server, tenants_, observers_);
  register_lora_routes(server, tenants_, lora_);
}

void Gateway::generate(const http::Request& http_request, std::shared_ptr<http::Responder> responder, bool is_anthropic, RequestKind kind) {
  const auto start = Clock::now();
  auto send_now = [&](const ApiError& error) {
    http::Response response = error_response(is_anthropic, error);
    if (error.code == "shutting_down") response.close_connection = true;
    responder->send(std::move(response));
  };
  if (server_.is_draining()) return send_now(server_error(503, "the server is shutting down", "shutting_down"));
  auto caller = authenticate(tenants_, http_request);
  if (!caller) return send_now(caller.error());  // no row: nobody to bill
  const tenants::Principal* principal = *caller ? &**caller : nullptr;

  metering::LedgerRow row;
  row.time_ms = unix_ms();
  if (principal != nullptr) {
    row.key_id = principal->key_id;
    row.org = principal->org;
  }
  // The request's id: the client's x-request-id when it is a sane token, else the response's own id
  // (set below; a request refused before that gets a fresh one). Every answer carries it back.
  row.request_id = client_request_id(http_request);
  std::shared_ptr<observe::Trace> trace;
  observe::TraceRecord trace_record;
  if (observers_.traces != nullptr || observers_.otlp != nullptr) {
    trace = std::make_shared<observe::Trace>(start, observe::TraceContext::from_traceparent(http_request.header("traceparent")));
    trace_record.api = is_anthropic ? "anthropic" : "openai";
    trace_record.operation = kind == RequestKind::kCompletion ? "text_completion" : "chat";
  }
  observe::RequestLogEntry log_entry;
  if (observers_.request_log != nullptr) {
    log_entry.arrival_s = static_cast<double>(row.time_ms) / 1000.0;
    log_entry.session_id = ledger_text(std::string(http_request.header("x-session-id")));
  }
  // From here on every answer has a ledger row, and goes out once the row is committed.
  auto refuse = [&](const ApiError& error, const http::Headers& headers = {}) {
    http::Response response = error_response(is_anthropic, error);
    if (row.request_id.empty()) row.request_id = fresh_request_id();
    response.headers.emplace_back("x-request-id", row.request_id);
    for (const auto& h : headers) response.headers.push_back(h);
    row.status = error.status;
    row.finish_reason = "error";
    row.e2e_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (observers_.request_log != nullptr) {
      log_entry.row = row;
      observers_.request_log->append(std::move(log_entry));
    }
    if (trace) {
      trace->add("refused", {{"status", error.status}, {"code", error.code}, {"message", error.message}});
      trace_record.error = error.message;
    }
    observe_finished(observers_, row, trace.get(), std::move(trace_record));
    if (ledger_ == nullptr) return responder->send(std::move(response));
    if (tenants_ != nullptr && !row.key_id.empty()) tenants_->count_request(row.key_id, "-", {}, row.status);
    ledger_->append(row, [responder, response = std::move(response)]() mutable { responder->send(std::move(response)); });
  };

  router::Router* router = router_.load();
  if (router == nullptr) return refuse(server_error(503, "the model is still loading; see GET /ready", "loading"));
  auto parsed = is_anthropic ? parse_anthropic_request(http_request.body) : parse_openai_request(kind, http_request.body);
  if (!parsed) return refuse(parsed.error());
  row.model = ledger_text(parsed->model);
  if (trace) {
    parsed->trace = trace;
    if (parsed->max_tokens) trace_record.max_tokens = *parsed->max_tokens;
    trace_record.temperature = parsed->sampling.temperature;
  }
  std::unique_ptr<tenants::Admission> admission;
  if (principal != nullptr) {
    std::vector<std::string> names = {parsed->model};
    names.insert(names.end(), parsed->fallback_models.begin(), parsed->fallback_models.end());
    if (auto refused = tenants_->check_models(*principal, names)) return refuse(refused->error);
    const int64_t prompt_estimate = estimate_prompt_tokens(*parsed);
    auto admitted = tenants_->admit(*principal, prompt_estimate, parsed->max_tokens,
                                    router->max_cost_usd(*parsed, prompt_estimate, tenants_->completion_reserve(parsed->max_tokens)));
    if (!admitted) return refuse(admitted.error().error, admitted.error().headers);
    admission = std::move(*admitted);
    parsed->cache_salt = tenants::Tenants::cache_salt(principal, parsed->cache_salt);
    // Placement: the org's policy and the key's (by id, else by name) both apply.
    if (auto it = org_policies_.find(principal->org); !principal->org.empty() && it != org_policies_.end()) parsed->placement.push_back(it->second);
    if (auto it = key_policies_.find(principal->key_id); it != key_policies_.end()) {
      parsed->placement.push_back(it->second);
    } else if (auto by_name = key_policies_.find(principal->name); by_name != key_policies_.end()) {
      parsed->placement.push_back(by_name->second);
    }
    // Pinned cache counts against the org's quota (a key without an org is its own).
    parsed->pin_owner = principal->org.empty() ? "key:" + principal->key_id : "org:" + principal->org;
  }
  std::unique_ptr<Renderer> renderer = is_anthropic ? std::unique_ptr<Renderer>(std::make_unique<AnthropicRenderer>(*parsed))
                                                    : std::make_unique<OpenAiRenderer>(*parsed);
  if (row.request_id.empty()) row.request_id = renderer->id();
  http::Headers headers = admission ? admission->headers() : http::Headers{};
  headers.emplace(headers.begin(), "x-request-id", row.request_id);
  if (observers_.request_log != nullptr) {
    log_entry.prefix_hash = system_prompt_hash(*parsed);
    if (observers_.request_log->options().log_content) log_entry.request = request_content(*parsed);
  }
  auto exchange = std::make_shared<Exchange>(
      std::move(renderer), responder, parsed->stream, std::move(headers),
      Exchange::Accounting{.ledger = ledger_, .tenants = tenants_, .admission = std::move(admission), .row = row, .start = start,
                           .observers = observers_, .log_entry = log_entry,  // copies: refuse() below may need them
                           .trace = trace, .trace_record = trace_record});
  auto call = router->submit(*parsed, [exchange](Event&& event) { exchange->accept(std::move(event)); });
  if (!call) {
    exchange->discard();
    return refuse(call.error());
  }
  // The connection holds the call (and so its retries and fallbacks) until the exchange ends; a client
  // that leaves first cancels it.
  responder->on_disconnect([call = *call, weak = std::weak_ptr<Exchange>(exchange)] {
    if (auto e = weak.lock()) e->client_left();
    call->cancel();
  });
}

std::string Gateway::metrics_text() const {
  std::string out = metrics_source_ ? metrics_source_() : std::string();
  if (vllm_metrics_) out += observe::vllm_compat_metrics(out);
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
    family("deployment_queued_work_tokens", "gauge", "Work of the requests in flight on a deployment, in prompt tokens of prefill (kv-events routes).",
           [](const auto& s) { return s.queued_work; });
    family("deployment_requests_total", "counter", "Attempts sent to a deployment (retries included).", [](const auto& s) { return s.requests; });
    family("deployment_failures_total", "counter", "Attempts that failed (connect, 429, 5xx, timeout).", [](const auto& s) { return s.failures; });
    family("deployment_ttft_ewma_seconds", "gauge", "Moving average of time to first event.", [](const auto& s) { return s.ttft_ewma_s; });
    family("deployment_breaker_open", "gauge", "1 while the deployment's circuit breaker is open or half-open.",
           [](const auto& s) { return s.breaker == "closed" ? 0 : 1; });
  }
  if (tenants_ != nullptr) out += tenants_->metrics_text();
  auto one = [&](const char* name, const char* type, const char* help, auto value) {
    prometheus_header(out, name, type, help);
    out += fmt::format("tern:{} {}\n", name, value);
  };
  if (observers_.request_log != nullptr) {
    const observe::RequestLogStats s = observers_.request_log->stats();
    one("request_log_lines_total", "counter", "Request-log lines written.", s.lines);
    one("request_log_dropped_lines_total", "counter", "Request-log lines dropped: the writer could not keep up (a stalled disk).", s.dropped);
    one("request_log_rotations_total", "counter", "Request-log rotations.", s.rotations);
    one("request_log_errors_total", "counter", "Failed request-log writes or rotations.", s.errors);
  }
  if (observers_.otlp != nullptr) {
    const observe::OtlpStats s = observers_.otlp->stats();
    one("otlp_exported_requests_total", "counter", "Requests whose spans the OpenTelemetry collector accepted.", s.exported_records);
    one("otlp_dropped_requests_total", "counter", "Requests whose spans were dropped (queue full, collector down or slow).", s.dropped_records);
    one("otlp_failed_posts_total", "counter", "OTLP export requests that failed.", s.failed_posts);
  }
  if (ledger_ != nullptr) {
    const metering::LedgerStats s = ledger_->stats();
    one("ledger_rows_written_total", "counter", "Ledger rows committed.", s.rows_written);
    one("ledger_batches_total", "counter", "Ledger transactions committed.", s.batches);
    one("ledger_write_errors_total", "counter", "Failed ledger transactions (each retried).", s.write_errors);
    one("ledger_rows_spilled_total", "counter", "Rows the store refused after retries, appended to the spill file.", s.rows_spilled);
    one("ledger_rows_deleted_total", "counter", "Rows deleted by retention.", s.rows_deleted);
    one("ledger_queue_rows", "gauge", "Rows waiting for the writer thread.", s.queued);
    one("ledger_last_commit_seconds", "gauge", "Duration of the last ledger transaction.", s.last_commit_seconds);
  }
  return out;
}

}  // namespace tern::api
