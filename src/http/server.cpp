#include "http/server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace tern::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

constexpr size_t kMaxHeaderBytes = 16 * 1024;

struct Route {
  std::map<std::string, Handler> by_method;
};

Response default_error(int status, std::string message, std::string code) {
  std::string body = nlohmann::json{{"error", {{"message", message}, {"code", code}}}}.dump();
  return {.status = status, .body = std::move(body), .content_type = "application/json", .headers = {}, .close_connection = false};
}

}  // namespace

std::string_view Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (beast::iequals(key, beast::string_view(name.data(), name.size()))) return value;
  }
  return {};
}

std::string Request::query_param(std::string_view name) const {
  const size_t question = target.find('?');
  if (question == std::string::npos) return {};
  std::string_view query = std::string_view(target).substr(question + 1);
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    const std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    std::string value;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') value += ' ';
      else if (raw[i] == '%' && i + 2 < raw.size() && hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
        value += static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2]));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return {};
}

struct Server::Impl {
  // State sessions read, declared before the io_context: sessions still queued in it are destroyed
  // with it, and must find these alive.
  ServerConfig config;
  std::map<std::string, Route> routes;
  ErrorRenderer error_renderer = default_error;
  std::function<void()> drain_hook;
  std::unique_ptr<net::ssl::context> tls;  // --tls-cert / --tls-key
  std::atomic<bool> draining{false};
  std::atomic<int64_t> open_connections{0};
  std::atomic<int64_t> open_exchanges{0};

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
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server::Impl& server) : stream_(std::move(socket)), server_(server) {
    server_.open_connections.fetch_add(1);
    if (server_.tls) tls_.emplace(stream_, *server_.tls);
    // Streams are many small writes: without this, Nagle holds each one back until the client's
    // delayed ACK (40 ms) whenever the previous write is still unacknowledged.
    beast::error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
  }
  ~Session() {
    // No disconnect callback here: a session dies with its io_context at shutdown, after the
    // handlers' owners (engines, providers) may be gone.
    if (exchange_open_) server_.open_exchanges.fetch_sub(1);
    server_.open_connections.fetch_sub(1);
  }

  void start() {
    if (!tls_) return do_read(true);
    stream_.expires_after(server_.config.read_timeout);  // a client that never completes its handshake
    tls_->async_handshake(net::ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->close();
      self->do_read(true);
    });
  }

  // ---- the exchange, as the Responder drives it (on the strand) ------------------------------------
  void send(uint64_t serial, Response response) {
    if (!is_current(serial)) return;
    if (response.close_connection) keep_alive_ = false;
    bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(response.status), version_};
    out.set(bhttp::field::server, "tern");
    out.set(bhttp::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) out.set(name, value);
    out.keep_alive(keep_alive_);
    out.body() = std::move(response.body);
    out.prepare_payload();
    std::ostringstream text;
    text << out;
    pending_ += text.str();
    end_exchange();
    schedule_flush();
  }

  void start_stream(uint64_t serial, const std::string& content_type, const Headers& headers) {
    if (!is_current(serial) || is_streaming_) return;
    is_streaming_ = true;
    bhttp::response<bhttp::empty_body> head{bhttp::status::ok, version_};
    head.set(bhttp::field::server, "tern");
    head.set(bhttp::field::content_type, content_type);
    head.set(bhttp::field::cache_control, "no-cache");
    for (const auto& [name, value] : headers) head.set(name, value);
    head.keep_alive(keep_alive_);
    head.chunked(true);
    std::ostringstream text;
    text << head.base();
    pending_ += text.str();
    schedule_flush();
  }

  void write(uint64_t serial, const std::string& data) {
    if (!is_current(serial) || !is_streaming_ || data.empty()) return;
    pending_ += fmt::format("{:x}\r\n", data.size());
    pending_ += data;
    pending_ += "\r\n";
    schedule_flush();
  }

  void end_stream(uint64_t serial) {
    if (!is_current(serial) || !is_streaming_) return;
    pending_ += "0\r\n\r\n";
    end_exchange();
    schedule_flush();
  }

  void set_on_disconnect(uint64_t serial, std::function<void()> callback) {
    if (is_current(serial)) on_disconnect_ = std::move(callback);
  }

  bool is_current(uint64_t serial) const { return exchange_open_ && serial == serial_ && !closed_; }

 private:

  // ---- reading requests -------------------------------------------------------------------------
  void do_read(bool first) {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(server_.config.max_body_bytes);
    // The first request must arrive within the read timeout; a kept-alive connection may idle longer.
    stream_.expires_after(first ? server_.config.read_timeout : server_.config.idle_timeout);
    with_stream([&](auto& s) {
      bhttp::async_read_header(s, buffer_, *parser_, beast::bind_front_handler(&Session::on_header, shared_from_this()));
    });
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    // From the headers on, the whole request must arrive within the read timeout (slow clients).
    stream_.expires_after(server_.config.read_timeout);
    if (beast::iequals(parser_->get()[bhttp::field::expect], "100-continue")) {
      // curl asks before sending a body over 1 KiB; without an answer it waits a second first.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      with_stream([&](auto& s) {
        net::async_write(s, net::buffer(kContinue), [self = shared_from_this()](beast::error_code write_ec, size_t) {
          if (write_ec) return self->close();
          self->read_body();
        });
      });
      return;
    }
    read_body();
  }

  void read_body() {
    with_stream([&](auto& s) { bhttp::async_read(s, buffer_, *parser_, beast::bind_front_handler(&Session::on_read, shared_from_this())); });
  }

  void on_read_error(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      return close();
    }
    keep_alive_ = false;
    if (ec == bhttp::error::body_limit) {
      linger_ = true;  // the client may still be sending the body: read it before closing
      return send_transport_error(413, fmt::format("the request body is over the limit of {} bytes", server_.config.max_body_bytes),
                                  "request_too_large");
    }
    if (ec == bhttp::error::header_limit) return send_transport_error(431, "the request headers are too large", "headers_too_large");
    send_transport_error(400, fmt::format("malformed HTTP request: {}", ec.message()), "malformed_request");
  }

  void send_transport_error(int status, std::string message, std::string code) {
    begin_exchange();
    send(serial_, server_.error_renderer(status, std::move(message), std::move(code)));
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    stream_.expires_never();
    auto raw = parser_->release();
    version_ = raw.version();
    keep_alive_ = raw.keep_alive() && !server_.draining.load();
    Request request;
    request.method = std::string(raw.method_string());
    request.target = std::string(raw.target());
    request.path = request.target.substr(0, request.target.find('?'));
    for (const auto& field : raw) request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    request.body = std::move(raw.body());
    begin_exchange();
    try {
      dispatch(request);
    } catch (const std::exception& e) {  // a bug must cost one request, never the server
      std::fprintf(stderr, "%s: internal error on %s: %s\n", server_.config.log_prefix.c_str(), request.target.c_str(), e.what());
      if (exchange_open_ && !is_streaming_) {
        keep_alive_ = false;
        send(serial_, server_.error_renderer(500, "internal error", "internal_error"));
      }
    }
    if (exchange_open_ && !closed_) watch_for_disconnect();
  }

  void dispatch(const Request& request) {
    auto route = server_.routes.find(request.path);
    // A route ending in "/*" takes every path below it (the longest such prefix wins).
    for (size_t slash = request.path.rfind('/'); route == server_.routes.end() && slash != std::string::npos && slash > 0;
         slash = request.path.rfind('/', slash - 1)) {
      route = server_.routes.find(request.path.substr(0, slash) + "/*");
    }
    if (route == server_.routes.end()) {
      return send(serial_, server_.error_renderer(404, fmt::format("no route for {} {}", request.method, request.path), "not_found"));
    }
    auto handler = route->second.by_method.find(request.method);
    if (handler == route->second.by_method.end()) {
      std::string allowed;
      for (const auto& [method, unused] : route->second.by_method) allowed += (allowed.empty() ? "" : ", ") + method;
      Response response = server_.error_renderer(405, fmt::format("use {} for {}", allowed, request.path), "method_not_allowed");
      response.headers.emplace_back("Allow", allowed);
      return send(serial_, std::move(response));
    }
    handler->second(request, make_responder());
  }

  std::shared_ptr<Responder> make_responder();

  void begin_exchange() {
    ++serial_;
    exchange_open_ = true;
    is_streaming_ = false;
    on_disconnect_ = nullptr;
    server_.open_exchanges.fetch_add(1);
  }

  void end_exchange() {
    if (!exchange_open_) return;
    exchange_open_ = false;
    on_disconnect_ = nullptr;
    response_complete_ = true;
    server_.open_exchanges.fetch_sub(1);
  }

  void watch_for_disconnect() {
    // A peek (data stays in the socket) completes with EOF or an error when the client goes away, or
    // with data when it pipelines its next request, which is then read after this response. Only the
    // exchange that armed it may act on it; it holds the session alive while the response is open.
    stream_.socket().async_receive(net::buffer(peek_byte_), tcp::socket::message_peek,
                                   [self = shared_from_this(), serial = serial_](beast::error_code ec, size_t) {
                                     if (!ec || !self->is_current(serial)) return;
                                     self->client_gone();
                                   });
  }

  /// The client went away with the exchange open: tell its owner (which cancels the work), then close.
  void client_gone() {
    auto callback = std::move(on_disconnect_);
    if (exchange_open_) {
      exchange_open_ = false;
      server_.open_exchanges.fetch_sub(1);
    }
    if (callback) callback();
    close();
  }

  // ---- writing ----------------------------------------------------------------------------------
  /// Writes what is pending once the current handler is done, so that everything one handler
  /// produces (a stream's head, its first event, the last event and the terminator) leaves in one
  /// system call instead of one each.
  void schedule_flush() {
    if (flush_scheduled_ || writing_) return;
    flush_scheduled_ = true;
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->flush_scheduled_ = false;
      self->flush();
    });
  }

  void flush() {
    if (writing_ || pending_.empty() || closed_) return;
    writing_ = true;
    in_flight_.clear();
    in_flight_.swap(pending_);
    stream_.expires_after(server_.config.write_timeout);
    with_stream([&](auto& s) { net::async_write(s, net::buffer(in_flight_), beast::bind_front_handler(&Session::on_write, shared_from_this())); });
  }

  void on_write(beast::error_code ec, size_t) {
    writing_ = false;
    if (ec) return client_gone();  // the client went away or stopped reading past the write timeout
    stream_.expires_never();
    if (!pending_.empty()) return flush();
    if (response_complete_) {
      response_complete_ = false;
      if (keep_alive_ && !server_.draining.load()) return do_read(false);
      if (linger_) return lingering_close();
      return close();
    }
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
    with_stream([&](auto& s) {
      s.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t n) {
        self->discarded_ += n;
        if (ec || self->discarded_ > (size_t{64} << 20)) return self->close();
        self->discard_more();
      });
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  /// Runs `operation` on the stream HTTP travels through: TLS over the TCP stream, or the TCP stream.
  template <typename Operation>
  void with_stream(Operation&& operation) {
    if (tls_) operation(*tls_);
    else operation(stream_);
  }

  beast::tcp_stream stream_;  // timeouts live here, also under TLS
  std::optional<net::ssl::stream<beast::tcp_stream&>> tls_;
  Server::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  unsigned version_ = 11;
  bool keep_alive_ = false;

  uint64_t serial_ = 0;  // which exchange on this connection the responder calls belong to
  bool exchange_open_ = false;
  bool is_streaming_ = false;
  std::function<void()> on_disconnect_;

  std::string pending_;    // bytes waiting to be written
  std::string in_flight_;  // bytes being written
  bool writing_ = false;
  bool flush_scheduled_ = false;
  bool response_complete_ = false;
  bool closed_ = false;
  bool linger_ = false;
  std::array<char, 1> peek_byte_{};
  std::string discard_;
  size_t discarded_ = 0;
};

/// Posts every call onto the session's strand, tagged with the exchange it belongs to.
class SessionResponder final : public Responder {
 public:
  SessionResponder(std::weak_ptr<Session> session, net::any_io_executor executor, uint64_t serial)
      : session_(std::move(session)), executor_(std::move(executor)), serial_(serial) {}

  void send(Response response) override {
    post([response = std::move(response)](Session& s, uint64_t serial) mutable { s.send(serial, std::move(response)); });
  }
  void start_stream(std::string content_type, Headers headers) override {
    post([content_type = std::move(content_type), headers = std::move(headers)](Session& s, uint64_t serial) {
      s.start_stream(serial, content_type, headers);
    });
  }
  void write(std::string data) override {
    if (data.empty()) return;
    post([data = std::move(data)](Session& s, uint64_t serial) { s.write(serial, data); });
  }
  void end_stream() override {
    post([](Session& s, uint64_t serial) { s.end_stream(serial); });
  }
  void run(std::function<void()> work) override {
    post([work = std::move(work)](Session&, uint64_t) { work(); });
  }
  void on_disconnect(std::function<void()> callback) override {
    post([callback = std::move(callback)](Session& s, uint64_t serial) mutable { s.set_on_disconnect(serial, std::move(callback)); });
  }

 private:
  template <typename F>
  void post(F&& work) {
    // On the strand already (a handler, or work posted here): run now, keeping call order.
    if (const auto* strand = executor_.target<net::strand<net::io_context::executor_type>>();
        strand != nullptr && strand->running_in_this_thread()) {
      if (auto s = session_.lock(); s && s->is_current(serial_)) work(*s, serial_);
      return;
    }
    net::post(executor_, [session = session_, serial = serial_, work = std::forward<F>(work)]() mutable {
      if (auto s = session.lock(); s && s->is_current(serial)) work(*s, serial);
    });
  }

  std::weak_ptr<Session> session_;
  net::any_io_executor executor_;
  uint64_t serial_;
};

std::shared_ptr<Responder> Session::make_responder() {
  return std::make_shared<SessionResponder>(weak_from_this(), stream_.get_executor(), serial_);
}

}  // namespace

void Server::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) std::make_shared<Session>(std::move(socket), *this)->start();
    else if (ec == net::error::no_descriptors) std::fprintf(stderr, "%s: out of file descriptors; raise ulimit -n\n", config.log_prefix.c_str());
    accept();
  });
}

void Server::Impl::begin_drain() {
  if (draining.exchange(true)) return;
  std::fprintf(stderr, "%s: shutting down: no new requests; %lld in flight, up to %.0f s to finish\n", config.log_prefix.c_str(),
               static_cast<long long>(open_exchanges.load()), config.drain_timeout.count() / 1000.0);
  beast::error_code ignored;
  acceptor.close(ignored);
  drain_deadline = std::chrono::steady_clock::now() + config.drain_timeout;
  poll_drain();
}

void Server::Impl::poll_drain() {
  const int64_t in_flight = open_exchanges.load();
  if (in_flight == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
    if (in_flight > 0) std::fprintf(stderr, "%s: drain timeout; aborting %lld requests\n", config.log_prefix.c_str(), static_cast<long long>(in_flight));
    if (drain_hook) std::exchange(drain_hook, nullptr)();  // aborts what is left; its exchanges get a final event
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

void Server::Impl::finish_shutdown() {
  ioc.stop();
  std::lock_guard lock(done_mutex);
  done = true;
  done_cv.notify_all();
}

Server::Server(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Server::~Server() {
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

void Server::route(std::string method, std::string path, Handler handler) {
  impl_->routes[std::move(path)].by_method[std::move(method)] = std::move(handler);
}

void Server::set_error_renderer(ErrorRenderer renderer) { impl_->error_renderer = std::move(renderer); }
void Server::set_drain_hook(std::function<void()> hook) { impl_->drain_hook = std::move(hook); }

Result<void> Server::enable_tls(const std::string& cert_file, const std::string& key_file) {
  auto context = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
  context->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                       net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
  beast::error_code ec;
  context->use_certificate_chain_file(cert_file, ec);
  if (ec) return fail("--tls-cert {}: {}", cert_file, ec.message());
  context->use_private_key_file(key_file, net::ssl::context::pem, ec);
  if (ec) return fail("--tls-key {}: {}", key_file, ec.message());
  impl_->tls = std::move(context);
  return {};
}

bool Server::is_tls() const { return impl_->tls != nullptr; }

Result<uint16_t> Server::listen() {
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

void Server::start() {
  impl_->signals.async_wait([this](beast::error_code ec, int) {
    if (!ec) impl_->begin_drain();
  });
  impl_->accept();
  const int n = std::max(1, impl_->config.io_threads);
  for (int i = 0; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void Server::request_shutdown() {
  net::post(impl_->ioc, [this] { impl_->begin_drain(); });
}

void Server::wait() {
  {
    std::unique_lock lock(impl_->done_mutex);
    impl_->done_cv.wait(lock, [&] { return impl_->done; });
  }
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

boost::asio::any_io_executor Server::executor() { return impl_->ioc.get_executor(); }

bool Server::is_draining() const { return impl_->draining.load(); }
int64_t Server::num_open_connections() const { return impl_->open_connections.load(); }
int64_t Server::num_open_exchanges() const { return impl_->open_exchanges.load(); }

}  // namespace tern::http
