#include "router/remote_provider.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <optional>
#include <thread>

#include "http/client.h"
#include "observe/trace.h"
#include "wire/anthropic/client.h"
#include "wire/openai/client.h"

namespace tern::router {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;
using wire::ApiError;

ApiError upstream_error(int status, std::string message, bool is_retryable, std::string retry_after = {}) {
  ApiError e = wire::server_error(status, std::move(message), "upstream_error", is_retryable);
  e.retry_after = std::move(retry_after);
  return e;
}

// ---- the provider -------------------------------------------------------------------------------

class RemoteProvider;

/// One upstream exchange; lives on the provider's I/O thread.
class RemoteCall final : public Call, public std::enable_shared_from_this<RemoteCall> {
 public:
  RemoteCall(RemoteProvider& provider, wire::EventSink sink);
  void cancel() override;
  void start(std::string path, std::string body, std::string traceparent);

 private:
  void on_data(std::string_view data);
  void flush_output();
  void on_finished(http::ErrorKind kind, int status, const std::string& detail);
  void fail(ApiError error);
  void emit(wire::Event&& event);

  RemoteProvider& provider_;
  wire::EventSink sink_;
  http::ExchangeHandle handle_;
  // Lives only until the call finishes, on the provider's thread: a router attempt that fell back may
  // release this call later on another provider's thread, after this provider's io_context is gone.
  std::optional<asio::steady_timer> first_byte_timer_;
  wire::Usage usage_;
  std::string finish_reason_;
  std::string retry_after_;
  std::string error_body_;  // a non-2xx response's body
  // Output of the current socket read's events, forwarded as one event: text and tool-call pieces.
  std::string text_;
  std::vector<wire::ToolCallDelta> tool_calls_;
  bool has_output_ = false;  // any text or tool call went to the client
  std::string stop_sequence_;
  wire::AnthropicStreamReader anthropic_reader_;  // numbers an Anthropic stream's tool calls
  bool saw_end_ = false;
  bool timed_out_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
};

class RemoteProvider final : public Provider {
 public:
  RemoteProvider(RemoteConfig config, http::Url url, std::optional<asio::any_io_executor> executor)
      : config_(std::move(config)),
        url_(std::move(url)),
        own_io_(executor ? nullptr : std::make_unique<asio::io_context>()),
        strand_(asio::make_strand(executor ? *executor : own_io_->get_executor())),
        health_timer_(strand_) {}
  ~RemoteProvider() override {
    if (own_io_) {
      own_io_->stop();
      if (thread_.joinable()) thread_.join();
    }
  }

  Result<void> start() {
    std::vector<std::pair<std::string, std::string>> headers;
    if (config_.kind == RemoteKind::kAnthropic) {
      headers.emplace_back("anthropic-version", "2023-06-01");
      if (!config_.api_key.empty()) headers.emplace_back("x-api-key", config_.api_key);
    } else if (!config_.api_key.empty()) {
      headers.emplace_back("Authorization", "Bearer " + config_.api_key);
    }
    auto client = http::HttpStreamClient::create(strand_, url_, config_.max_connections, std::move(headers), config_.ca_file);
    if (!client) return fail("deployment '{}': {}", config_.name, client.error().message);
    client_ = std::move(*client);
    if (!config_.health_path.empty()) {
      // The health path is on the server's root, not below the API's base path (/v1).
      http::Url root = url_;
      root.base_path.clear();
      auto health = http::HttpStreamClient::create(strand_, root, 1, {}, config_.ca_file);
      if (!health) return fail("deployment '{}': {}", config_.name, health.error().message);
      health_client_ = std::move(*health);
      asio::post(strand_, [this] { check_health(); });
    }
    if (own_io_) {
      thread_ = std::thread([this] {
        auto guard = asio::make_work_guard(*own_io_);
        own_io_->run();
      });
    }
    return {};
  }

  bool is_healthy() const override { return healthy_.load(); }

  std::expected<std::shared_ptr<Call>, ApiError> submit(const wire::Request& request, wire::EventSink sink) override {
    std::string body;
    if (config_.kind == RemoteKind::kAnthropic) {
      auto b = wire::anthropic_request_body(request, config_.upstream_model, config_.default_max_tokens);
      if (!b) {
        ApiError error = b.error();
        if (request.kind != wire::RequestKind::kChat) error.message = fmt::format("deployment '{}' is an Anthropic endpoint: it has no text completions", config_.name);
        return std::unexpected(std::move(error));
      }
      body = b->dump(-1, ' ', false, json::error_handler_t::replace);
    } else {
      body = wire::openai_request_body(request, config_.upstream_model).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    const std::string path = config_.kind == RemoteKind::kAnthropic ? "/messages"
                             : request.kind == wire::RequestKind::kChat ? "/chat/completions" : "/completions";
    in_flight_.fetch_add(1);
    auto call = std::make_shared<RemoteCall>(*this, std::move(sink));
    // A traced request's context goes upstream (W3C traceparent), so the provider's spans join its trace.
    std::string traceparent = request.trace ? request.trace->context().traceparent() : std::string();
    asio::post(strand_, [call, path, body = std::move(body), traceparent = std::move(traceparent)]() mutable {
      call->start(path, std::move(body), std::move(traceparent));
    });
    return call;
  }

  int64_t num_in_flight() const override { return in_flight_.load(); }

 private:
  friend class RemoteCall;

  /// One probe now, the next after the interval (on the I/O thread).
  void check_health() {
    http::StreamCallbacks callbacks;
    callbacks.on_finished = [this](http::ErrorKind kind, int status, std::string detail, http::Clock::time_point) {
      const bool ok = kind == http::ErrorKind::kNone && status / 100 == 2;
      if (healthy_.exchange(ok) != ok) {
        std::fprintf(stderr, "tern serve: deployment '%s' is %s (%s%s)\n", config_.name.c_str(), ok ? "healthy again" : "unhealthy",
                     config_.health_path.c_str(), ok ? "" : (": " + detail).c_str());
      }
      health_timer_.expires_after(config_.health_interval);
      health_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) check_health();
      });
    };
    health_client_->get(config_.health_path, std::max(config_.health_interval, std::chrono::milliseconds(1000)), std::move(callbacks));
  }

  RemoteConfig config_;
  http::Url url_;
  std::unique_ptr<asio::io_context> own_io_;  // without the server's executor
  asio::any_io_executor strand_;
  std::unique_ptr<http::HttpStreamClient> client_;
  std::unique_ptr<http::HttpStreamClient> health_client_;
  asio::steady_timer health_timer_;
  std::atomic<bool> healthy_{true};
  std::thread thread_;
  std::atomic<int64_t> in_flight_{0};
};

RemoteCall::RemoteCall(RemoteProvider& provider, wire::EventSink sink)
    : provider_(provider), sink_(std::move(sink)), first_byte_timer_(std::in_place, provider.strand_) {}

void RemoteCall::cancel() {
  asio::post(provider_.strand_, [self = shared_from_this()] {
    self->cancelled_ = true;
    self->handle_.cancel();
  });
}

void RemoteCall::start(std::string path, std::string body, std::string traceparent) {
  if (cancelled_) return fail(wire::server_error(499, "cancelled"));
  std::weak_ptr<RemoteCall> weak = shared_from_this();
  first_byte_timer_->expires_after(provider_.config_.first_byte_timeout);
  first_byte_timer_->async_wait([weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->has_output_ || self->finished_) return;
    self->timed_out_ = true;
    self->handle_.cancel();
  });
  http::StreamCallbacks callbacks;
  callbacks.on_response = [weak](int status, std::string_view retry_after, http::Clock::time_point) {
    if (auto self = weak.lock()) {
      self->retry_after_ = std::string(retry_after);
      if (status / 100 == 2 && self->first_byte_timer_) self->first_byte_timer_->cancel();
    }
  };
  callbacks.on_error_body = [weak](std::string_view body) {
    if (auto self = weak.lock()) self->error_body_ = std::string(body);
  };
  callbacks.on_event = [weak](std::string_view data, http::Clock::time_point) {
    if (auto self = weak.lock()) self->on_data(data);
  };
  // Events that arrived together go on as one: one hand-off to the client's connection per read.
  callbacks.on_events_end = [weak] {
    if (auto self = weak.lock()) self->flush_output();
  };
  // The exchange owns the call until it finishes.
  callbacks.on_finished = [self = shared_from_this()](http::ErrorKind kind, int status, std::string detail, http::Clock::time_point) {
    self->on_finished(kind, status, detail);
  };
  std::vector<std::pair<std::string, std::string>> headers;
  if (!traceparent.empty()) headers.emplace_back("traceparent", std::move(traceparent));
  handle_ = provider_.client_->post_stream(path, std::move(body), provider_.config_.timeout, std::move(callbacks), headers);
}

void RemoteCall::on_data(std::string_view data) {
  if (finished_ || cancelled_) return;
  const bool is_anthropic = provider_.config_.kind == RemoteKind::kAnthropic;
  auto parsed = is_anthropic ? anthropic_reader_.read(data) : wire::parse_openai_stream_chunk(data);
  if (!parsed) {
    flush_output();
    fail(upstream_error(502, fmt::format("deployment '{}' sent a malformed event: {}", provider_.config_.name, parsed.error().message), !has_output_));
    handle_.cancel();
    return;
  }
  if (parsed->error) {
    flush_output();
    const std::string& type = parsed->error->type;
    const std::string what = is_anthropic ? fmt::format("{}: {}", type.empty() ? "error" : type, parsed->error->message) : parsed->error->message;
    fail(upstream_error(502, fmt::format("deployment '{}' reported an error: {}", provider_.config_.name, what), !has_output_));
    handle_.cancel();
    return;
  }
  if (parsed->usage) parsed->usage->apply_to(usage_);
  if (!parsed->finish_reason.empty()) finish_reason_ = parsed->finish_reason;
  if (!parsed->stop_sequence.empty()) stop_sequence_ = parsed->stop_sequence;
  if (!parsed->tool_calls.empty()) {
    has_output_ = true;
    if (first_byte_timer_) first_byte_timer_->cancel();
    for (auto& call : parsed->tool_calls) tool_calls_.push_back(std::move(call));
  }
  if (parsed->is_end) saw_end_ = true;
  if (!parsed->text.empty()) {
    has_output_ = true;
    if (first_byte_timer_) first_byte_timer_->cancel();
    text_ += parsed->text;
  }
}

void RemoteCall::flush_output() {
  if ((text_.empty() && tool_calls_.empty()) || finished_) return;
  wire::Event event;
  event.text = std::move(text_);
  text_.clear();
  event.tool_calls = std::move(tool_calls_);
  tool_calls_.clear();
  event.usage = usage_;  // an Anthropic upstream's message_start gave the prompt's counts already
  emit(std::move(event));
}

void RemoteCall::on_finished(http::ErrorKind kind, int status, const std::string& detail) {
  first_byte_timer_.reset();
  if (finished_) return;
  flush_output();
  const std::string& name = provider_.config_.name;
  if (kind == http::ErrorKind::kNone) {
    if (!saw_end_ && finish_reason_.empty()) {
      return fail(upstream_error(502, fmt::format("deployment '{}' ended its stream without finishing", name), !has_output_));
    }
    wire::Event last;
    last.finished = true;
    last.finish_reason = finish_reason_.empty() ? "stop" : finish_reason_;
    last.stop_sequence = stop_sequence_;
    last.usage = usage_;
    return emit(std::move(last));
  }
  if (kind == http::ErrorKind::kCancelled && timed_out_) {
    return fail(upstream_error(504, fmt::format("deployment '{}' sent nothing within {} ms", name, provider_.config_.first_byte_timeout.count()), !has_output_));
  }
  if (kind == http::ErrorKind::kCancelled) return fail(wire::server_error(499, "cancelled"));
  if (kind == http::ErrorKind::kHttpStatus) {
    const bool is_request_fault = status == 400 || status == 413 || status == 422;
    if (is_request_fault) {
      // The request's own fault: the caller sees the upstream's status and error as if it had asked
      // the upstream itself (in its own schema); another deployment would refuse it too.
      if (auto passed = wire::parse_error_body(status, error_body_)) return fail(std::move(*passed));
    }
    const int client_status = status == 429 ? 429 : is_request_fault ? status : 502;
    return fail(upstream_error(client_status, fmt::format("deployment '{}' answered {}", name, detail), !is_request_fault, retry_after_));
  }
  const bool before_any = !has_output_;
  fail(upstream_error(kind == http::ErrorKind::kTimeout ? 504 : 502,
                      fmt::format("deployment '{}' failed{}: {} ({})", name, before_any ? "" : " mid-stream", detail, http::error_kind_name(kind)),
                      before_any));
}

void RemoteCall::fail(ApiError error) {
  if (finished_) return;
  wire::Event last;
  last.finished = true;
  last.finish_reason = "error";
  last.usage = usage_;
  last.error = std::move(error);
  emit(std::move(last));
}

void RemoteCall::emit(wire::Event&& event) {
  if (finished_) return;
  if (event.finished) {
    finished_ = true;
    first_byte_timer_.reset();
    provider_.in_flight_.fetch_sub(1);
  }
  if (cancelled_ && !event.finished) return;
  sink_(std::move(event));
}

}  // namespace

Result<std::shared_ptr<Provider>> make_remote_provider(RemoteConfig config, std::optional<asio::any_io_executor> executor) {
  auto url = http::parse_url(config.base_url);
  if (!url) return fail("deployment '{}': base_url {}", config.name, url.error().message);
  auto provider = std::make_shared<RemoteProvider>(std::move(config), std::move(*url), std::move(executor));
  if (auto started = provider->start(); !started) return std::unexpected(started.error());
  return std::shared_ptr<Provider>(provider);
}

}  // namespace tern::router
