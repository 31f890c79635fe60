#pragma once
// A streaming HTTP/1.1 client, shared by `tern bench` (load generation) and the gateway (upstream
// providers): HTTP or HTTPS (OpenSSL through Asio: the peer's certificate and host name are verified
// against the system CA store or a given CA file), Boost.Asio/Beast, driven by the caller's executor: a
// single-threaded io_context, or a strand (the gateway runs its upstream clients on the server's own
// I/O threads, each client on its strand, so relaying an event costs no thread hand-off). One `HttpStreamClient` per target owns a keep-alive connection
// pool; a request that finds every allowed connection busy waits in a FIFO (that wait is the client-side
// queue delay a report shows, so it is never hidden).
//
// Every response byte is timestamped with steady_clock in the completion handler that delivered it, so the
// timestamps include the event loop's own delay — which is why the loop must stay light (bench_capacity
// measures how light).

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/verb.hpp>

#include "util/result.h"

namespace tern::http {

using Clock = std::chrono::steady_clock;

/// Where a target listens: from "http://host:port/base/path" or "https://...".
struct Url {
  std::string host;
  uint16_t port = 80;
  std::string base_path;  ///< without trailing slash, e.g. "/v1"
  bool is_tls = false;    ///< https: TLS (OpenSSL), the server's certificate verified against the CA store
};

/// Parses an http:// or https:// URL (ports default to 80 and 443).
Result<Url> parse_url(std::string_view url);

/// Why a request failed; `kNone` for success. Reports group errors by these names.
enum class ErrorKind { kNone, kConnect, kHttpStatus, kTimeout, kIncompleteStream, kBadChunk, kServerError, kIo, kCancelled };
std::string_view error_kind_name(ErrorKind kind);

struct StreamCallbacks {
  /// The request got a connection slot and is being written (end of client-side queueing).
  std::function<void(Clock::time_point)> on_dispatched;
  /// The response's status line and headers arrived; `retry_after` is its Retry-After header (or empty).
  std::function<void(int http_status, std::string_view retry_after, Clock::time_point arrival)> on_response;
  /// One SSE `data:` payload of a 2xx response, with the time its bytes arrived.
  std::function<void(std::string_view data, Clock::time_point arrival)> on_event;
  /// After the events of one socket read (a relay can forward them as one write instead of several).
  std::function<void()> on_events_end;
  /// A non-2xx response's body (its first 64 KiB), once it has arrived whole; before on_finished. A
  /// relay passes an upstream's error object on with it.
  std::function<void(std::string_view body)> on_error_body;
  /// The exchange ended: kNone when the response completed, else why not. `detail` is a short message
  /// (HTTP status line and body start, the socket error).
  std::function<void(ErrorKind kind, int http_status, std::string detail, Clock::time_point at)> on_finished;
};

class Exchange;
struct Connection;

/// Cancels an exchange: its connection is closed and on_finished reports kCancelled (unless it had
/// already finished). Call it on the client's executor.
class ExchangeHandle {
 public:
  ExchangeHandle() = default;
  explicit ExchangeHandle(std::weak_ptr<Exchange> exchange) : exchange_(std::move(exchange)) {}
  void cancel();

 private:
  std::weak_ptr<Exchange> exchange_;
};

class HttpStreamClient {
 public:
  /// Resolves the host once (blocking) so that no request pays for DNS. `max_connections` bounds the
  /// open connections; extra requests queue.
  /// `ca_file`: for https, a PEM bundle to trust instead of the system's CA store.
  static Result<std::unique_ptr<HttpStreamClient>> create(boost::asio::any_io_executor executor, Url endpoint,
                                                          size_t max_connections,
                                                          std::vector<std::pair<std::string, std::string>> headers,
                                                          const std::string& ca_file = {});
  ~HttpStreamClient();

  /// Starts a POST of `body` to base_path + `path`, streaming the response through `callbacks`. The
  /// exchange fails with kTimeout if not finished within `timeout`.
  ExchangeHandle post_stream(std::string_view path, std::string body, std::chrono::milliseconds timeout,
                             StreamCallbacks callbacks, const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

  /// A GET of base_path + `path` (health checks): on_finished tells the status; no events.
  ExchangeHandle get(std::string_view path, std::chrono::milliseconds timeout, StreamCallbacks callbacks);

  const Url& url() const { return url_; }

  size_t num_waiting() const { return waiting_.size(); }
  size_t num_open_connections() const { return num_open_; }
  /// Closes idle keep-alive connections (end of run).
  void close_idle();

 private:
  friend class Exchange;
  HttpStreamClient(boost::asio::any_io_executor executor, Url endpoint, boost::asio::ip::tcp::endpoint address,
                   size_t max_connections, std::vector<std::pair<std::string, std::string>> headers,
                   std::unique_ptr<boost::asio::ssl::context> tls);
  ExchangeHandle start_exchange(boost::beast::http::verb method, std::string_view path, std::string body,
                                std::chrono::milliseconds timeout, StreamCallbacks callbacks,
                                const std::vector<std::pair<std::string, std::string>>& extra_headers);
  /// A connection for `exchange`: an idle one (unless `fresh`), a new one within max_connections, or
  /// the FIFO of waiting exchanges.
  void acquire(std::shared_ptr<Exchange> exchange, bool fresh = false);
  void release(std::unique_ptr<Connection> connection, bool is_reusable);

  boost::asio::any_io_executor executor_;
  std::unique_ptr<boost::asio::ssl::context> tls_;  // https only
  Url url_;
  boost::asio::ip::tcp::endpoint address_;
  size_t max_connections_;
  std::vector<std::pair<std::string, std::string>> headers_;
  size_t num_open_ = 0;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::deque<std::shared_ptr<Exchange>> waiting_;
};

}  // namespace tern::http
