#include "http/client.h"

#include <array>
#include <charconv>
#include <limits>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "http/chunked_decoder.h"
#include "http/sse_parser.h"

namespace tern::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

Result<Url> parse_url(std::string_view url) {
  const bool is_tls = url.starts_with("https://");
  if (!is_tls && !url.starts_with("http://")) return fail("'{}': expected a URL starting with http:// or https://", url);
  std::string_view rest = url.substr(is_tls ? 8 : 7);
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  while (path.ends_with('/')) path.remove_suffix(1);
  Url endpoint;
  endpoint.is_tls = is_tls;
  endpoint.port = is_tls ? 443 : 80;
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos) {
    std::string_view port_text = authority.substr(colon + 1);
    unsigned port = 0;
    auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (error != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      return fail("'{}': bad port '{}'", url, port_text);
    }
    endpoint.port = static_cast<uint16_t>(port);
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return fail("'{}': no host", url);
  endpoint.host = authority;
  endpoint.base_path = path;
  return endpoint;
}

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone: return "none";
    case ErrorKind::kConnect: return "connect";
    case ErrorKind::kHttpStatus: return "http_status";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kIncompleteStream: return "incomplete_stream";
    case ErrorKind::kBadChunk: return "bad_chunk";
    case ErrorKind::kServerError: return "server_error";
    case ErrorKind::kIo: return "io";
    case ErrorKind::kCancelled: return "cancelled";
  }
  return "unknown";
}

struct Connection {
  Connection(const asio::any_io_executor& executor, asio::ssl::context* tls_context) : socket(executor) {
    if (tls_context != nullptr) tls.emplace(socket, *tls_context);
  }
  /// Runs `operation` on the stream requests and responses travel through: TLS over the socket, or the
  /// socket itself.
  template <typename Operation>
  void with_stream(Operation&& operation) {
    if (tls) operation(*tls);
    else operation(socket);
  }
  tcp::socket socket;
  std::optional<asio::ssl::stream<tcp::socket&>> tls;
  beast::flat_buffer buffer;
  bool is_connected = false;
  bool has_served = false;  ///< reused keep-alive connection: the server may have closed it meanwhile
};

/// One request/response on one connection. Kept alive by the shared_ptr captured in each pending
/// handler; it hands its connection back to the pool exactly once, in finish().
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(HttpStreamClient& client, http::request<http::string_body> request, std::chrono::milliseconds timeout,
           StreamCallbacks callbacks)
      : client_(client), request_(std::move(request)), timeout_(timeout), callbacks_(std::move(callbacks)),
        timer_(client.executor_) {}

  void arm_timeout() {
    timer_.expires_after(timeout_);
    timer_.async_wait([self = shared_from_this()](error_code error) {
      if (error || self->is_finished_) return;
      self->is_timed_out_ = true;
      if (self->connection_) {
        error_code ignored;
        self->connection_->socket.close(ignored);  // pending operations fail with operation_aborted
      } else {
        self->finish(ErrorKind::kTimeout, 0, "timed out waiting for a connection");
      }
    });
  }

  void cancel() {
    if (is_finished_) return;
    is_cancelled_ = true;
    if (connection_) {
      error_code ignored;
      connection_->socket.close(ignored);  // pending operations fail with operation_aborted
    } else {
      finish(ErrorKind::kCancelled, 0, "cancelled");
    }
  }

  void start(std::unique_ptr<Connection> connection) {
    connection_ = std::move(connection);
    if (is_finished_) {  // timed out while queued; hand the connection straight back
      client_.release(std::move(connection_), true);
      return;
    }
    if (!has_dispatched_ && callbacks_.on_dispatched) callbacks_.on_dispatched(Clock::now());
    has_dispatched_ = true;
    if (connection_->is_connected) {
      write();
      return;
    }
    connection_->socket.async_connect(client_.address_, [self = shared_from_this()](error_code error) {
      if (error) return self->fail_io(ErrorKind::kConnect, error);
      error_code ignored;
      self->connection_->socket.set_option(tcp::no_delay(true), ignored);
      if (!self->connection_->tls) {
        self->connection_->is_connected = true;
        return self->write();
      }
      self->handshake();
    });
  }

 private:
  /// TLS: name the server (SNI), verify its certificate chain and that it is for this host.
  void handshake() {
    auto& tls = *connection_->tls;
    const std::string& host = client_.url_.host;
    error_code ec;
    asio::ip::make_address(host, ec);
    if (ec) SSL_set_tlsext_host_name(tls.native_handle(), host.c_str());  // SNI takes names, not addresses
    tls.set_verify_mode(asio::ssl::verify_peer);
    tls.set_verify_callback(asio::ssl::host_name_verification(host));
    tls.async_handshake(asio::ssl::stream_base::client, [self = shared_from_this()](error_code error) {
      if (error) return self->fail_io(ErrorKind::kConnect, error);
      self->connection_->is_connected = true;
      self->write();
    });
  }

  void write() {
    parser_.emplace();
    // Beast 1.74 compares a Content-Length with an empty limit as `len > none`, always true (body_limit
    // error), so "unlimited" is spelled as the largest value. Only the header goes through this parser.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    connection_->with_stream([&](auto& stream) {
      http::async_write(stream, request_, [self = shared_from_this()](error_code error, size_t) {
        if (error) return self->fail_io(ErrorKind::kIo, error);
        self->connection_->with_stream([&](auto& s) {
          http::async_read_header(s, self->connection_->buffer, *self->parser_, [self](error_code error, size_t) {
            if (error) return self->fail_io(ErrorKind::kIo, error);
            self->on_header(Clock::now());
          });
        });
      });
    });
  }

  void on_header(Clock::time_point now) {
    has_response_ = true;
    status_ = static_cast<int>(parser_->get().result_int());
    is_keep_alive_ = parser_->keep_alive();
    is_chunked_ = parser_->chunked();
    if (callbacks_.on_response) {
      const auto retry_after = parser_->get()[http::field::retry_after];
      callbacks_.on_response(status_, std::string_view(retry_after.data(), retry_after.size()), now);
      if (is_finished_) return;
    }
    if (!is_chunked_ && parser_->content_length()) {
      has_length_ = true;
      remaining_length_ = *parser_->content_length();
    } else if (!is_chunked_) {
      is_keep_alive_ = false;  // the body runs until the server closes
    }
    // Bytes read past the header are the start of the body.
    const auto leftover = connection_->buffer.data();
    std::string body_start(static_cast<const char*>(leftover.data()), leftover.size());
    connection_->buffer.consume(leftover.size());
    if (consume_body(body_start, now)) read_more();
  }

  void read_more() {
    connection_->with_stream([&](auto& stream) {
      stream.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](error_code error, size_t num_bytes) {
        const Clock::time_point now = Clock::now();  // one timestamp for everything this read brought
        // A body that runs until the close; over TLS a close without close_notify reads as truncated.
        const bool is_close = error == asio::error::eof || error == asio::ssl::error::stream_truncated;
        if (is_close && !self->is_chunked_ && !self->has_length_) return self->complete(now);
        if (error) return self->fail_io(ErrorKind::kIo, error);
        if (self->consume_body({self->buffer_.data(), num_bytes}, now)) self->read_more();
      });
    });
  }

  /// Decodes body bytes and hands on their payload; returns whether more body is expected.
  bool consume_body(std::string_view raw, Clock::time_point now) {
    std::string_view payload = raw;
    if (is_chunked_) {
      decoded_.clear();
      if (!chunked_.feed(raw, decoded_)) {
        if (!decoded_.empty()) deliver(decoded_, now);  // what arrived intact before the bad framing
        finish(ErrorKind::kIo, status_, "malformed chunked encoding", now, false);
        return false;
      }
      payload = decoded_;
    } else if (has_length_) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_length_, raw.size()));
      payload = raw.substr(0, take);
      remaining_length_ -= take;
    }
    if (!payload.empty()) deliver(payload, now);
    if (is_finished_) return false;
    const bool is_complete = is_chunked_ ? chunked_.is_done() : has_length_ && remaining_length_ == 0;
    if (is_complete) {
      complete(now);
      return false;
    }
    return true;
  }

  void deliver(std::string_view bytes, Clock::time_point arrival) {
    if (status_ / 100 != 2) {  // keep the start of an error body for the report
      constexpr size_t kMaxErrorBody = 64 << 10;
      if (error_body_.size() < kMaxErrorBody) error_body_.append(bytes.substr(0, kMaxErrorBody - error_body_.size()));
      return;
    }
    const auto& events = sse_.feed(bytes);
    for (const std::string& data : events) {
      if (callbacks_.on_event) callbacks_.on_event(data, arrival);
    }
    if (!events.empty() && callbacks_.on_events_end) callbacks_.on_events_end();
  }

  void complete(Clock::time_point now) {
    if (status_ / 100 != 2) {
      if (callbacks_.on_error_body) callbacks_.on_error_body(error_body_);
      return finish(ErrorKind::kHttpStatus, status_, fmt::format("HTTP {}: {:.300}", status_, error_body_), now, is_keep_alive_);
    }
    std::string tail = sse_.flush();
    if (!tail.empty() && callbacks_.on_event) callbacks_.on_event(tail, now);
    finish(ErrorKind::kNone, status_, {}, now, is_keep_alive_);
  }

  void fail_io(ErrorKind kind, error_code error) {
    if (is_finished_) return;
    if (is_cancelled_) return finish(ErrorKind::kCancelled, status_, "cancelled", Clock::now(), false);
    if (is_timed_out_) return finish(ErrorKind::kTimeout, status_, "timed out", Clock::now(), false);
    // A keep-alive connection the server closed while idle fails before any response byte: retry once on a
    // fresh connection, which is what every HTTP client does and no server counts as a request. Not on
    // another idle one: the server has likely closed those too (they idled as long or longer).
    if (!has_response_ && connection_ && connection_->has_served && !has_retried_) {
      has_retried_ = true;
      client_.release(std::move(connection_), false);
      client_.acquire(shared_from_this(), /*fresh=*/true);
      return;
    }
    finish(kind, status_, error.message(), Clock::now(), false);
  }

  void finish(ErrorKind kind, int status, std::string detail, Clock::time_point at = Clock::now(),
              bool is_reusable = false) {
    if (is_finished_) return;
    is_finished_ = true;
    timer_.cancel();
    if (connection_) {
      connection_->has_served = true;
      connection_->buffer.consume(connection_->buffer.size());
      client_.release(std::move(connection_), is_reusable);
    }
    if (callbacks_.on_finished) callbacks_.on_finished(kind, status, std::move(detail), at);
  }

  friend class HttpStreamClient;
  HttpStreamClient& client_;
  http::request<http::string_body> request_;
  std::chrono::milliseconds timeout_;
  StreamCallbacks callbacks_;
  asio::steady_timer timer_;
  std::unique_ptr<Connection> connection_;
  std::optional<http::response_parser<http::empty_body>> parser_;  // header only; the body is decoded here
  std::array<char, 16384> buffer_{};
  ChunkedDecoder chunked_;
  std::string decoded_;
  uint64_t remaining_length_ = 0;
  bool has_length_ = false;
  bool is_chunked_ = false;
  bool is_keep_alive_ = false;
  SseParser sse_;
  std::string error_body_;
  int status_ = 0;
  bool has_dispatched_ = false;
  bool has_response_ = false;
  bool has_retried_ = false;
  bool is_timed_out_ = false;
  bool is_cancelled_ = false;
  bool is_finished_ = false;
};

void ExchangeHandle::cancel() {
  if (auto exchange = exchange_.lock()) exchange->cancel();
}

Result<std::unique_ptr<HttpStreamClient>> HttpStreamClient::create(
    asio::any_io_executor executor, Url endpoint, size_t max_connections,
    std::vector<std::pair<std::string, std::string>> headers, const std::string& ca_file) {
  std::unique_ptr<asio::ssl::context> tls;
  if (endpoint.is_tls) {
    tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    error_code ec;
    if (!ca_file.empty()) tls->load_verify_file(ca_file, ec);
    else tls->set_default_verify_paths(ec);
    if (ec) return fail("{}: {}", ca_file.empty() ? "the system CA store" : "CA file " + ca_file, ec.message());
  }
  tcp::resolver resolver(executor);
  error_code error;
  auto results = resolver.resolve(endpoint.host, std::to_string(endpoint.port), error);
  if (error || results.empty()) {
    return fail("cannot resolve {}:{}: {}", endpoint.host, endpoint.port, error.message());
  }
  tcp::endpoint address = results.begin()->endpoint();
  return std::unique_ptr<HttpStreamClient>(
      new HttpStreamClient(std::move(executor), std::move(endpoint), address, max_connections, std::move(headers), std::move(tls)));
}

HttpStreamClient::HttpStreamClient(asio::any_io_executor executor, Url endpoint, tcp::endpoint address,
                                   size_t max_connections, std::vector<std::pair<std::string, std::string>> headers,
                                   std::unique_ptr<asio::ssl::context> tls)
    : executor_(std::move(executor)), tls_(std::move(tls)), url_(std::move(endpoint)), address_(address), max_connections_(std::max<size_t>(1, max_connections)),
      headers_(std::move(headers)) {}

HttpStreamClient::~HttpStreamClient() = default;

ExchangeHandle HttpStreamClient::post_stream(std::string_view path, std::string body, std::chrono::milliseconds timeout,
                                             StreamCallbacks callbacks,
                                             const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  return start_exchange(http::verb::post, path, std::move(body), timeout, std::move(callbacks), extra_headers);
}

ExchangeHandle HttpStreamClient::get(std::string_view path, std::chrono::milliseconds timeout, StreamCallbacks callbacks) {
  return start_exchange(http::verb::get, path, {}, timeout, std::move(callbacks), {});
}

ExchangeHandle HttpStreamClient::start_exchange(http::verb method, std::string_view path, std::string body,
                                                std::chrono::milliseconds timeout, StreamCallbacks callbacks,
                                                const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  http::request<http::string_body> request{method, url_.base_path + std::string(path), 11};
  request.set(http::field::host, fmt::format("{}:{}", url_.host, url_.port));
  if (method == http::verb::post) {
    request.set(http::field::content_type, "application/json");
    request.set(http::field::accept, "text/event-stream");
  }
  request.set(http::field::user_agent, "tern/0.1");
  for (const auto& [name, value] : headers_) request.set(name, value);
  for (const auto& [name, value] : extra_headers) request.set(name, value);
  request.keep_alive(true);
  request.body() = std::move(body);
  request.prepare_payload();
  auto exchange = std::make_shared<Exchange>(*this, std::move(request), timeout, std::move(callbacks));
  exchange->arm_timeout();
  ExchangeHandle handle(exchange);
  acquire(std::move(exchange));
  return handle;
}

void HttpStreamClient::acquire(std::shared_ptr<Exchange> exchange, bool fresh) {
  if (fresh && !idle_.empty() && num_open_ >= max_connections_) {
    // Every slot is open: the oldest idle connection makes room for the new one.
    error_code ignored;
    idle_.front()->socket.close(ignored);
    idle_.erase(idle_.begin());
    --num_open_;
  }
  if (!fresh && !idle_.empty()) {
    std::unique_ptr<Connection> connection = std::move(idle_.back());
    idle_.pop_back();
    exchange->start(std::move(connection));
  } else if (num_open_ < max_connections_) {
    ++num_open_;
    exchange->start(std::make_unique<Connection>(executor_, tls_.get()));
  } else {
    waiting_.push_back(std::move(exchange));
  }
}

void HttpStreamClient::release(std::unique_ptr<Connection> connection, bool is_reusable) {
  if (!is_reusable) {
    error_code ignored;
    connection->socket.close(ignored);
    connection.reset();
    --num_open_;
  }
  // Hand the slot to the oldest waiting request that has not already given up.
  while (!waiting_.empty()) {
    std::shared_ptr<Exchange> next = std::move(waiting_.front());
    waiting_.pop_front();
    if (next->is_finished_) continue;
    if (connection) {
      next->start(std::move(connection));
    } else {
      ++num_open_;
      next->start(std::make_unique<Connection>(executor_, tls_.get()));
    }
    return;
  }
  if (connection) idle_.push_back(std::move(connection));
}

void HttpStreamClient::close_idle() {
  for (auto& connection : idle_) {
    error_code ignored;
    connection->socket.close(ignored);
    --num_open_;
  }
  idle_.clear();
}

}  // namespace tern::http
