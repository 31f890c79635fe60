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

namespace tern::router {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;
using api::ApiError;

// ---- writing the upstream request ---------------------------------------------------------------

json openai_body(const api::Request& r, const RemoteConfig& config) {
  json body = {{"model", config.upstream_model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (r.kind == api::RequestKind::kChat) {
    body["messages"] = r.messages;
  } else {
    body["prompt"] = r.prompt ? json(*r.prompt) : json(r.prompt_tokens);
  }
  if (r.max_tokens) body["max_tokens"] = *r.max_tokens;
  const auto& s = r.sampling;
  const engine::SamplingParams defaults;
  if (s.temperature != defaults.temperature) body["temperature"] = s.temperature;
  if (s.top_p != defaults.top_p) body["top_p"] = s.top_p;
  if (s.presence_penalty != 0) body["presence_penalty"] = s.presence_penalty;
  if (s.frequency_penalty != 0) body["frequency_penalty"] = s.frequency_penalty;
  // Not in OpenAI's schema, but understood by vLLM, SGLang, llama-server and tern: sent only when set.
  if (s.top_k > 0) body["top_k"] = s.top_k;
  if (s.min_p > 0) body["min_p"] = s.min_p;
  if (s.repetition_penalty != 1.0f) body["repetition_penalty"] = s.repetition_penalty;
  if (r.ignore_eos) body["ignore_eos"] = true;
  if (r.seed_given) body["seed"] = s.seed;
  if (!r.stop.empty()) body["stop"] = r.stop;
  return body;
}

std::expected<json, ApiError> anthropic_body(const api::Request& r, const RemoteConfig& config) {
  if (r.kind != api::RequestKind::kChat) {
    return std::unexpected(api::bad_request(fmt::format("deployment '{}' is an Anthropic endpoint: it has no text completions", config.name)));
  }
  json body = {{"model", config.upstream_model}, {"stream", true}, {"max_tokens", r.max_tokens.value_or(config.default_max_tokens)}};
  std::string system;
  json messages = json::array();
  for (const auto& m : r.messages) {
    const std::string role = m.value("role", "user");
    const std::string content = m.value("content", "");
    if (role == "system") {
      system += (system.empty() ? "" : "\n\n") + content;
      continue;
    }
    const std::string mapped = role == "assistant" ? "assistant" : "user";  // tool results read as user turns
    // Anthropic wants alternating turns: merge consecutive ones of the same role.
    if (!messages.empty() && messages.back()["role"] == mapped) {
      messages.back()["content"] = messages.back()["content"].get<std::string>() + "\n\n" + content;
    } else {
      messages.push_back({{"role", mapped}, {"content", content}});
    }
  }
  if (messages.empty()) return std::unexpected(api::bad_request("the request has no user or assistant message", "messages"));
  body["messages"] = std::move(messages);
  if (!system.empty()) body["system"] = system;
  const auto& s = r.sampling;
  if (s.temperature != 1.0f) body["temperature"] = std::min(s.temperature, 1.0f);  // Anthropic's range is [0, 1]
  if (s.top_p != 1.0f) body["top_p"] = s.top_p;
  if (s.top_k > 0) body["top_k"] = s.top_k;
  if (!r.stop.empty()) body["stop_sequences"] = r.stop;
  return body;
}

// ---- reading the upstream stream ----------------------------------------------------------------

/// What one SSE payload said, in neutral terms.
struct Parsed {
  std::string text;
  std::string finish_reason;
  bool has_usage = false;
  bool is_end = false;  ///< [DONE] or message_stop
  std::optional<std::string> error;
};

int64_t int_at(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

std::expected<Parsed, std::string> parse_openai_chunk(std::string_view data, api::Usage& usage) {
  Parsed out;
  if (data == "[DONE]") {
    out.is_end = true;
    return out;
  }
  json j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::unexpected(fmt::format("not a JSON object: {:.80}", data));
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    out.error = e->is_object() ? e->value("message", e->dump()) : e->dump();
    return out;
  }
  if (auto choices = j.find("choices"); choices != j.end() && choices->is_array() && !choices->empty()) {
    const json& c = (*choices)[0];
    if (auto delta = c.find("delta"); delta != c.end() && delta->is_object()) {
      if (auto content = delta->find("content"); content != delta->end() && content->is_string()) out.text = content->get<std::string>();
    } else if (auto text = c.find("text"); text != c.end() && text->is_string()) {
      out.text = text->get<std::string>();
    }
    if (auto finish = c.find("finish_reason"); finish != c.end() && finish->is_string()) out.finish_reason = finish->get<std::string>();
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    out.has_usage = true;
    usage.prompt_tokens = int_at(*u, "prompt_tokens");
    usage.completion_tokens = int_at(*u, "completion_tokens");
    if (auto details = u->find("prompt_tokens_details"); details != u->end() && details->is_object()) {
      usage.cached_tokens = int_at(*details, "cached_tokens");
      usage.cache_write_tokens = int_at(*details, "cache_write_tokens");
    }
  }
  return out;
}

std::expected<Parsed, std::string> parse_anthropic_event(std::string_view data, api::Usage& usage) {
  Parsed out;
  json j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return std::unexpected(fmt::format("not an Anthropic event: {:.80}", data));
  }
  const std::string type = j["type"].get<std::string>();
  auto read_usage = [&](const json& u) {
    out.has_usage = true;
    const int64_t input = int_at(u, "input_tokens"), read = int_at(u, "cache_read_input_tokens"), written = int_at(u, "cache_creation_input_tokens");
    if (u.contains("input_tokens")) usage.prompt_tokens = input + read + written;
    if (u.contains("cache_read_input_tokens")) usage.cached_tokens = read;
    if (u.contains("cache_creation_input_tokens")) usage.cache_write_tokens = written;
    if (auto c = u.find("cache_creation"); c != u.end() && c->is_object() && c->contains("ephemeral_1h_input_tokens")) {
      usage.cache_write_1h_tokens = int_at(*c, "ephemeral_1h_input_tokens");
    }
    if (u.contains("output_tokens")) usage.completion_tokens = int_at(u, "output_tokens");
  };
  if (type == "message_start") {
    if (j.contains("message") && j["message"].is_object() && j["message"].contains("usage")) read_usage(j["message"]["usage"]);
  } else if (type == "content_block_delta") {
    const json& delta = j.value("delta", json::object());
    if (delta.value("type", "") == "text_delta") out.text = delta.value("text", "");
  } else if (type == "message_delta") {
    if (j.contains("delta") && j["delta"].is_object()) {
      const std::string stop = j["delta"].value("stop_reason", "");
      out.finish_reason = stop == "max_tokens" ? "length" : stop.empty() ? "" : "stop";
    }
    if (j.contains("usage") && j["usage"].is_object()) read_usage(j["usage"]);
  } else if (type == "message_stop") {
    out.is_end = true;
  } else if (type == "error") {
    const json& e = j.value("error", json::object());
    out.error = fmt::format("{}: {}", e.value("type", "error"), e.value("message", ""));
  }
  return out;
}

/// An upstream's refusal of the request itself (400, 413, 422) as the caller's error: the upstream's
/// status, message, param and code, from OpenAI's {"error": {...}} or Anthropic's {"type": "error",
/// "error": {type, message}}. Types are kept in OpenAI's names (ApiError's convention); the Anthropic
/// adapter names them again from the status. nullopt: the body is neither shape.
std::optional<ApiError> passed_through_error(int status, std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto e = j.find("error");
  if (e == j.end() || !e->is_object()) return std::nullopt;
  auto text = [&](const char* key) {
    auto it = e->find(key);
    return it != e->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (text("message").empty()) return std::nullopt;
  ApiError out = api::server_error(status, text("message"));
  out.param = text("param");
  out.code = text("code");
  const std::string type = text("type");
  // Anthropic's request_too_large and the like have no OpenAI name: invalid_request_error covers them.
  if (type == "invalid_request_error" || type == "not_found_error" || type == "permission_error") out.type = type;
  return out;
}

ApiError upstream_error(int status, std::string message, bool is_retryable, std::string retry_after = {}) {
  ApiError e = api::server_error(status, std::move(message), "upstream_error", is_retryable);
  e.retry_after = std::move(retry_after);
  return e;
}

// ---- the provider -------------------------------------------------------------------------------

class RemoteProvider;

/// One upstream exchange; lives on the provider's I/O thread.
class RemoteCall final : public Call, public std::enable_shared_from_this<RemoteCall> {
 public:
  RemoteCall(RemoteProvider& provider, api::EventSink sink);
  void cancel() override;
  void start(std::string path, std::string body);

 private:
  void on_data(std::string_view data);
  void flush_text();
  void on_finished(http::ErrorKind kind, int status, const std::string& detail);
  void fail(ApiError error);
  void emit(api::Event&& event);

  RemoteProvider& provider_;
  api::EventSink sink_;
  http::ExchangeHandle handle_;
  // Lives only until the call finishes, on the provider's thread: a router attempt that fell back may
  // release this call later on another provider's thread, after this provider's io_context is gone.
  std::optional<asio::steady_timer> first_byte_timer_;
  api::Usage usage_;
  std::string finish_reason_;
  std::string retry_after_;
  std::string error_body_;  // a non-2xx response's body
  std::string text_;  // text of the current socket read's events, forwarded as one event
  bool has_text_ = false;
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

  std::expected<std::shared_ptr<Call>, ApiError> submit(const api::Request& request, api::EventSink sink) override {
    std::string body;
    if (config_.kind == RemoteKind::kAnthropic) {
      auto b = anthropic_body(request, config_);
      if (!b) return std::unexpected(b.error());
      body = b->dump(-1, ' ', false, json::error_handler_t::replace);
    } else {
      body = openai_body(request, config_).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    const std::string path = config_.kind == RemoteKind::kAnthropic ? "/messages"
                             : request.kind == api::RequestKind::kChat ? "/chat/completions" : "/completions";
    in_flight_.fetch_add(1);
    auto call = std::make_shared<RemoteCall>(*this, std::move(sink));
    asio::post(strand_, [call, path, body = std::move(body)]() mutable { call->start(path, std::move(body)); });
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

RemoteCall::RemoteCall(RemoteProvider& provider, api::EventSink sink)
    : provider_(provider), sink_(std::move(sink)), first_byte_timer_(std::in_place, provider.strand_) {}

void RemoteCall::cancel() {
  asio::post(provider_.strand_, [self = shared_from_this()] {
    self->cancelled_ = true;
    self->handle_.cancel();
  });
}

void RemoteCall::start(std::string path, std::string body) {
  if (cancelled_) return fail(api::server_error(499, "cancelled"));
  std::weak_ptr<RemoteCall> weak = shared_from_this();
  first_byte_timer_->expires_after(provider_.config_.first_byte_timeout);
  first_byte_timer_->async_wait([weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->has_text_ || self->finished_) return;
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
    if (auto self = weak.lock()) self->flush_text();
  };
  // The exchange owns the call until it finishes.
  callbacks.on_finished = [self = shared_from_this()](http::ErrorKind kind, int status, std::string detail, http::Clock::time_point) {
    self->on_finished(kind, status, detail);
  };
  handle_ = provider_.client_->post_stream(path, std::move(body), provider_.config_.timeout, std::move(callbacks));
}

void RemoteCall::on_data(std::string_view data) {
  if (finished_ || cancelled_) return;
  auto parsed = provider_.config_.kind == RemoteKind::kAnthropic ? parse_anthropic_event(data, usage_) : parse_openai_chunk(data, usage_);
  if (!parsed) {
    flush_text();
    fail(upstream_error(502, fmt::format("deployment '{}' sent a malformed event: {}", provider_.config_.name, parsed.error()), !has_text_));
    handle_.cancel();
    return;
  }
  if (parsed->error) {
    flush_text();
    fail(upstream_error(502, fmt::format("deployment '{}' reported an error: {}", provider_.config_.name, *parsed->error), !has_text_));
    handle_.cancel();
    return;
  }
  if (!parsed->finish_reason.empty()) finish_reason_ = parsed->finish_reason;
  if (parsed->is_end) saw_end_ = true;
  if (!parsed->text.empty()) {
    has_text_ = true;
    if (first_byte_timer_) first_byte_timer_->cancel();
    text_ += parsed->text;
  }
}

void RemoteCall::flush_text() {
  if (text_.empty() || finished_) return;
  api::Event event;
  event.text = std::move(text_);
  text_.clear();
  event.usage = usage_;  // an Anthropic upstream's message_start gave the prompt's counts already
  emit(std::move(event));
}

void RemoteCall::on_finished(http::ErrorKind kind, int status, const std::string& detail) {
  first_byte_timer_.reset();
  if (finished_) return;
  flush_text();
  const std::string& name = provider_.config_.name;
  if (kind == http::ErrorKind::kNone) {
    if (!saw_end_ && finish_reason_.empty()) {
      return fail(upstream_error(502, fmt::format("deployment '{}' ended its stream without finishing", name), !has_text_));
    }
    api::Event last;
    last.finished = true;
    last.finish_reason = finish_reason_.empty() ? "stop" : finish_reason_;
    last.usage = usage_;
    return emit(std::move(last));
  }
  if (kind == http::ErrorKind::kCancelled && timed_out_) {
    return fail(upstream_error(504, fmt::format("deployment '{}' sent nothing within {} ms", name, provider_.config_.first_byte_timeout.count()), !has_text_));
  }
  if (kind == http::ErrorKind::kCancelled) return fail(api::server_error(499, "cancelled"));
  if (kind == http::ErrorKind::kHttpStatus) {
    const bool is_request_fault = status == 400 || status == 413 || status == 422;
    if (is_request_fault) {
      // The request's own fault: the caller sees the upstream's status and error as if it had asked
      // the upstream itself (in its own schema); another deployment would refuse it too.
      if (auto passed = passed_through_error(status, error_body_)) return fail(std::move(*passed));
    }
    const int client_status = status == 429 ? 429 : is_request_fault ? status : 502;
    return fail(upstream_error(client_status, fmt::format("deployment '{}' answered {}", name, detail), !is_request_fault, retry_after_));
  }
  const bool before_any = !has_text_;
  fail(upstream_error(kind == http::ErrorKind::kTimeout ? 504 : 502,
                      fmt::format("deployment '{}' failed{}: {} ({})", name, before_any ? "" : " mid-stream", detail, http::error_kind_name(kind)),
                      before_any));
}

void RemoteCall::fail(ApiError error) {
  if (finished_) return;
  api::Event last;
  last.finished = true;
  last.finish_reason = "error";
  last.usage = usage_;
  last.error = std::move(error);
  emit(std::move(last));
}

void RemoteCall::emit(api::Event&& event) {
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
