#include "api/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <array>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "api/openai_response.h"

namespace tern::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;

constexpr size_t kMaxHeaderBytes = 16 * 1024;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

struct HttpServer::Impl {
  // State sessions read, declared before the io_context: sessions still queued in it are destroyed
  // with it, and must find these alive.
  ServerConfig config;
  std::atomic<ServedModel*> model{nullptr};
  std::atomic<bool> draining{false};
  std::atomic<bool> engine_stopped{false};  ///< after this, sessions no longer call into the engine
  std::atomic<int64_t> open_connections{0};
  std::atomic<int64_t> active_generations{0};

  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  net::signal_set signals{ioc, SIGINT, SIGTERM};
  net::steady_timer drain_timer{ioc};
  std::vector<std::thread> threads;
  std::chrono::steady_clock::time_point drain_deadline;

  std::mutex done_mutex;
  std::condition_variable done_cv;
  bool done = false;

  explicit Impl(ServerConfig c) : config(std::move(c)) {}

  void accept();
  void begin_drain();
  void poll_drain();
  void finish_shutdown();
  std::string metrics_text() const;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server) : stream_(std::move(socket)), server_(server) {
    server_.open_connections.fetch_add(1);
  }
  ~Session() {
    if (engine_id_ != 0 && !finished_) cancel_generation();
    server_.open_connections.fetch_sub(1);
  }

  void start() { do_read(true); }

 private:
  // ---- reading requests -------------------------------------------------------------------------
  void do_read(bool first) {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(server_.config.max_body_bytes);
    // The first request must arrive within the read timeout; a kept-alive connection may idle longer.
    stream_.expires_after(first ? server_.config.read_timeout : server_.config.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    // From the headers on, the whole request must arrive within the read timeout (slow clients).
    stream_.expires_after(server_.config.read_timeout);
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      // curl asks before sending a body over 1 KiB; without an answer it waits a second first.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue), [self = shared_from_this()](beast::error_code write_ec, size_t) {
        if (write_ec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      return close();
    }
    if (ec == http::error::body_limit) {
      linger_ = true;  // the client may still be sending the body: read it before closing
      return send_error({.status = 413, .message = fmt::format("the request body is over the limit of {} bytes", server_.config.max_body_bytes),
                         .type = "invalid_request_error", .param = {}, .code = "request_too_large"}, false);
    }
    if (ec == http::error::header_limit) {
      return send_error({.status = 431, .message = "the request headers are too large", .type = "invalid_request_error", .param = {}, .code = {}}, false);
    }
    send_error(bad_request(fmt::format("malformed HTTP request: {}", ec.message())), false);
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    stream_.expires_never();
    request_ = parser_->release();
    keep_alive_ = request_.keep_alive() && !server_.draining.load();
    try {
      route();
    } catch (const std::exception& e) {  // a bug must cost one request, never the server
      std::fprintf(stderr, "tern serve: internal error on %s: %s\n", std::string(request_.target()).c_str(), e.what());
      send_error({.status = 500, .message = "internal error", .type = "server_error", .param = {}, .code = {}}, false);
    }
  }

  void route() {
    const auto target = std::string(request_.target());
    const std::string path = target.substr(0, target.find('?'));
    const auto method = request_.method();
    ServedModel* model = server_.model.load();
    if (path == "/health") {
      if (expect(method, http::verb::get)) send_json(200, {{"status", "ok"}});
      return;
    }
    if (path == "/ready") {
      if (!expect(method, http::verb::get)) return;
      if (server_.draining.load()) return send_json(503, {{"status", "draining"}});
      return model != nullptr ? send_json(200, {{"status", "ready"}, {"model", model->name()}})
                              : send_json(503, {{"status", "loading"}});
    }
    if (path == "/metrics") {
      if (!expect(method, http::verb::get)) return;
      return send_text(200, server_.metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    }
    if (path == "/v1/models") {
      if (!expect(method, http::verb::get)) return;
      json data = json::array();
      if (model != nullptr) {
        data.push_back({{"id", model->name()}, {"object", "model"}, {"created", 0}, {"owned_by", "tern"},
                        {"max_model_len", model->max_model_len()}});
      }
      return send_json(200, {{"object", "list"}, {"data", data}});
    }
    if (path == "/v1/chat/completions" || path == "/v1/completions") {
      if (!expect(method, http::verb::post)) return;
      return start_generation(path == "/v1/chat/completions" ? Endpoint::kChat : Endpoint::kCompletions);
    }
    send_error({.status = 404, .message = fmt::format("no route for {} {}", std::string(request_.method_string()), path),
                .type = "invalid_request_error", .param = {}, .code = "not_found"});
  }

  bool expect(http::verb method, http::verb wanted) {
    if (method == wanted) return true;
    send_error({.status = 405, .message = fmt::format("use {} for {}", std::string(http::to_string(wanted)), std::string(request_.target())),
                .type = "invalid_request_error", .param = {}, .code = "method_not_allowed"});
    return false;
  }

  // ---- generation -------------------------------------------------------------------------------
  void start_generation(Endpoint endpoint) {
    ServedModel* model = server_.model.load();
    if (server_.draining.load()) {
      return send_error({.status = 503, .message = "the server is shutting down", .type = "server_error", .param = {}, .code = "shutting_down"}, false);
    }
    if (model == nullptr) {
      return send_error({.status = 503, .message = "the model is still loading; see GET /ready", .type = "server_error", .param = {}, .code = "loading"});
    }
    auto parsed = parse_openai_request(endpoint, request_.body());
    if (!parsed) return send_error(parsed.error());
    if (!model->answers_to(parsed->model)) {
      return send_error({.status = 404, .message = fmt::format("the model '{}' does not exist; this server serves '{}'", parsed->model, model->name()),
                         .type = "invalid_request_error", .param = "model", .code = "model_not_found"});
    }
    openai_ = std::move(*parsed);
    auto prepared = model->prepare(*openai_);
    if (!prepared) return send_error(prepared.error());
    builder_.emplace(*openai_, model->name(), model->tokenizer());
    model_ = model;

    std::weak_ptr<Session> weak = shared_from_this();
    auto executor = stream_.get_executor();
    auto sink = [weak, executor](engine::GenerationEvent&& event) {
      net::post(executor, [weak, event = std::move(event)]() mutable {
        if (auto self = weak.lock()) self->on_event(std::move(event));
      });
    };
    auto id = model->engine().submit(std::move(*prepared), std::move(sink));
    if (!id) {
      switch (id.error().kind) {
        case engine::SubmitError::kQueueFull:
          return send_error({.status = 429, .message = id.error().message, .type = "rate_limit_error", .param = {}, .code = "queue_full"}, true, "1");
        case engine::SubmitError::kTooLong:
          return send_error(bad_request(id.error().message, "max_tokens"));
        case engine::SubmitError::kStopped:
          return send_error({.status = 503, .message = id.error().message, .type = "server_error", .param = {}, .code = "shutting_down"}, false);
      }
    }
    engine_id_ = *id;
    finished_ = false;
    server_.active_generations.fetch_add(1);
    if (openai_->stream) {
      http::response<http::empty_body> head{http::status::ok, request_.version()};
      head.set(http::field::content_type, "text/event-stream");
      head.set(http::field::cache_control, "no-cache");
      head.keep_alive(keep_alive_);
      head.chunked(true);
      std::ostringstream header_text;
      header_text << head.base();
      pending_ = header_text.str();
      if (openai_->endpoint == Endpoint::kChat) enqueue_chunk(ResponseBuilder::sse(builder_->role_chunk()));
      else flush();
    }
    watch_for_disconnect();
  }

  void watch_for_disconnect() {
    // A peek (data stays in the socket) completes with EOF or an error when the client goes away, or
    // with data when it pipelines its next request, which is then read after this response. Only the
    // generation that armed it may act on it; it holds the session alive while the engine works.
    stream_.socket().async_receive(net::buffer(peek_byte_), tcp::socket::message_peek,
                                   [self = shared_from_this(), id = engine_id_](beast::error_code ec, size_t) {
                                     if (self->finished_ || self->engine_id_ != id || !ec) return;
                                     self->cancel_generation();
                                     self->close();
                                   });
  }

  void cancel_generation() {
    if (ServedModel* model = model_; model != nullptr && engine_id_ != 0 && !finished_ && !server_.engine_stopped.load()) {
      model->engine().cancel(engine_id_);
      finished_ = true;
      server_.active_generations.fetch_sub(1);
    }
  }

  void on_event(engine::GenerationEvent&& event) {
    if (finished_ || closed_) return;
    if (openai_->stream) {
      if (!event.error.empty()) {
        enqueue_chunk(ResponseBuilder::sse({{"error", {{"message", event.error}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}}));
      }
      if (!event.text.empty() || !event.logprobs.empty() || event.finished) {
        enqueue_chunk(ResponseBuilder::sse(builder_->delta_chunk(event.text, event.logprobs, event.finished ? event.finish_reason : "")));
      }
      if (event.finished) {
        if (openai_->include_usage) enqueue_chunk(ResponseBuilder::sse(builder_->usage_chunk(event.usage)));
        enqueue_chunk("data: [DONE]\n\n");
        pending_ += "0\r\n\r\n";  // last chunk of the chunked body
        end_generation();
        flush();
      }
      return;
    }
    text_ += event.text;
    logprobs_.insert(logprobs_.end(), event.logprobs.begin(), event.logprobs.end());
    if (!event.finished) return;
    end_generation();
    if (!event.error.empty()) {
      return send_error({.status = 500, .message = event.error, .type = "server_error", .param = {}, .code = {}});
    }
    send_json(200, builder_->full_response(text_, logprobs_, event.finish_reason, event.usage));
  }

  void end_generation() {
    finished_ = true;
    server_.active_generations.fetch_sub(1);
    response_complete_ = true;
  }

  // ---- writing ----------------------------------------------------------------------------------
  void enqueue_chunk(const std::string& data) {
    pending_ += fmt::format("{:x}\r\n", data.size());
    pending_ += data;
    pending_ += "\r\n";
    flush();
  }

  void flush() {
    if (writing_ || pending_.empty() || closed_) return;
    writing_ = true;
    in_flight_.clear();
    in_flight_.swap(pending_);
    stream_.expires_after(server_.config.write_timeout);
    net::async_write(stream_, net::buffer(in_flight_), beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, size_t) {
    writing_ = false;
    if (ec) {  // the client went away or stopped reading past the write timeout
      cancel_generation();
      return close();
    }
    stream_.expires_never();
    if (!pending_.empty()) return flush();
    if (response_complete_) {
      response_complete_ = false;
      reset_request_state();
      if (keep_alive_ && !server_.draining.load()) return do_read(false);
      if (linger_) return lingering_close();
      return close();
    }
  }

  void reset_request_state() {
    openai_.reset();
    builder_.reset();
    text_.clear();
    logprobs_.clear();
    engine_id_ = 0;
    model_ = nullptr;
  }

  void send_response(int status, std::string body, const char* content_type, const char* retry_after = nullptr) {
    http::response<http::string_body> response{static_cast<http::status>(status), request_.version()};
    response.set(http::field::server, "tern");
    response.set(http::field::content_type, content_type);
    if (retry_after != nullptr) response.set(http::field::retry_after, retry_after);
    response.keep_alive(keep_alive_);
    response.body() = std::move(body);
    response.prepare_payload();
    std::ostringstream text;
    text << response;
    pending_ += text.str();
    response_complete_ = true;
    flush();
  }

  void send_json(int status, const json& body) { send_response(status, dump(body), "application/json"); }
  void send_text(int status, std::string body, const char* content_type) { send_response(status, std::move(body), content_type); }
  void send_error(const ApiError& error, bool keep_alive = true, const char* retry_after = nullptr) {
    if (!keep_alive) keep_alive_ = false;
    if (request_.version() == 0) request_.version(11);
    send_response(error.status, dump(error.to_json()), "application/json", retry_after);
  }

  // After an early error response: stop sending, then discard what the client still sends (up to a
  // bound, within the read timeout) so it can finish its upload and read the response instead of
  // failing on a reset connection.
  void lingering_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(server_.config.read_timeout);
    discard_more();
  }

  void discard_more() {
    discard_.resize(64 * 1024);
    stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->discarded_ += n;
      if (ec || self->discarded_ > (size_t{64} << 20)) return self->close();
      self->discard_more();
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  bool keep_alive_ = false;

  std::optional<OpenAiRequest> openai_;
  std::optional<ResponseBuilder> builder_;
  ServedModel* model_ = nullptr;
  uint64_t engine_id_ = 0;
  bool finished_ = true;
  std::string text_;
  std::vector<engine::TokenLogprob> logprobs_;

  std::string pending_;    // bytes waiting to be written
  std::string in_flight_;  // bytes being written
  bool writing_ = false;
  bool response_complete_ = false;
  bool closed_ = false;
  bool linger_ = false;
  std::array<char, 1> peek_byte_{};
  std::string discard_;
  size_t discarded_ = 0;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) std::make_shared<Session>(std::move(socket), *this)->start();
    else if (ec == net::error::no_descriptors) std::fprintf(stderr, "tern serve: out of file descriptors; raise ulimit -n\n");
    accept();
  });
}

std::string HttpServer::Impl::metrics_text() const {
  std::string out;
  if (ServedModel* m = model.load(); m != nullptr) out = m->engine().metrics().render();
  out += "# HELP tern:http_connections_open Open client connections.\n# TYPE tern:http_connections_open gauge\n";
  out += fmt::format("tern:http_connections_open {}\n", open_connections.load());
  return out;
}

void HttpServer::Impl::begin_drain() {
  if (draining.exchange(true)) return;
  std::fprintf(stderr, "tern serve: shutting down: no new requests; %lld in flight, up to %.0f s to finish\n",
               static_cast<long long>(active_generations.load()), config.drain_timeout.count() / 1000.0);
  beast::error_code ignored;
  acceptor.close(ignored);
  drain_deadline = std::chrono::steady_clock::now() + config.drain_timeout;
  poll_drain();
}

void HttpServer::Impl::poll_drain() {
  ServedModel* m = model.load();
  const int64_t in_flight = m != nullptr ? m->engine().num_in_flight() : 0;
  if (in_flight == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
    if (in_flight > 0) std::fprintf(stderr, "tern serve: drain timeout; aborting %lld requests\n", static_cast<long long>(in_flight));
    if (m != nullptr && !engine_stopped.exchange(true)) {
      m->engine().stop();  // aborts what is left; their sessions get a final event
    }
    // Give sessions a moment to write their last bytes.
    drain_timer.expires_after(std::chrono::milliseconds(300));
    drain_timer.async_wait([this](beast::error_code) { finish_shutdown(); });
    return;
  }
  drain_timer.expires_after(std::chrono::milliseconds(50));
  drain_timer.async_wait([this](beast::error_code ec) {
    if (!ec) poll_drain();
  });
}

void HttpServer::Impl::finish_shutdown() {
  ioc.stop();
  std::lock_guard lock(done_mutex);
  done = true;
  done_cv.notify_all();
}

HttpServer::HttpServer(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

HttpServer::~HttpServer() {
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

Result<uint16_t> HttpServer::listen() {
  beast::error_code ec;
  auto address = net::ip::make_address(impl_->config.host, ec);
  if (ec) return fail("invalid --host '{}': {}", impl_->config.host, ec.message());
  tcp::endpoint endpoint{address, impl_->config.port};
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("cannot listen on {}:{}: {}", impl_->config.host, impl_->config.port, ec.message());
  return acceptor.local_endpoint().port();
}

void HttpServer::start() {
  impl_->signals.async_wait([this](beast::error_code ec, int) {
    if (!ec) impl_->begin_drain();
  });
  impl_->accept();
  const int n = std::max(1, impl_->config.io_threads);
  for (int i = 0; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void HttpServer::set_model(ServedModel* model) { impl_->model.store(model); }

void HttpServer::request_shutdown() {
  net::post(impl_->ioc, [this] { impl_->begin_drain(); });
}

void HttpServer::wait() {
  {
    std::unique_lock lock(impl_->done_mutex);
    impl_->done_cv.wait(lock, [&] { return impl_->done; });
  }
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

}  // namespace tern::api
