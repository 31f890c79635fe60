#pragma once
// The HTTP transport of `tern serve`: an event-driven HTTP/1.1 server (Boost.Beast over Asio) with a
// small fixed number of I/O threads, so thousands of streaming connections cost a socket and a few
// buffers each. It knows routes, bodies, chunked streaming and timeouts — nothing of OpenAI or
// Anthropic: the schema adapters (src/api/) register handlers on its route table.
//
//   request ─► read (header limit, body limit, read timeout) ─► route table ─► handler
//   handler ─► Responder: send() a whole response, or start_stream() / write() ... / end_stream()
//
// A Responder may be used from any thread (engine and upstream threads stream through it): each call
// is posted onto the connection's strand, in call order, and calls for an exchange that has ended
// (the client left, or the connection moved on to its next request) are dropped. A client that
// disconnects while its response is open triggers the exchange's on_disconnect callback at once.
// SIGTERM/SIGINT: stop accepting, let open exchanges finish up to the drain timeout, call the drain
// hook (which aborts what is left), then exit.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "util/result.h"

namespace tern::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< path and query as sent
  std::string path;    ///< target without the query
  std::string body;
  Headers headers;     ///< names as sent; look them up with header()

  /// The first header of that name (case-insensitive), or empty.
  std::string_view header(std::string_view name) const;
  /// A query parameter, percent-decoded ("+" as space); empty if absent.
  std::string query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  Headers headers;          ///< extra headers (Retry-After, ...)
  bool close_connection = false;
};

/// Renders a transport-level error (malformed request, 404, 405, 413, 431, 500) in the API's schema.
/// `code` is a short machine-readable name ("not_found", "request_too_large", ...).
using ErrorRenderer = std::function<Response(int status, std::string message, std::string code)>;

class Responder {
 public:
  virtual ~Responder() = default;
  /// A whole response; ends the exchange.
  virtual void send(Response response) = 0;
  /// The head of a chunked streaming response (status 200).
  virtual void start_stream(std::string content_type = "text/event-stream", Headers headers = {}) = 0;
  /// One chunk of the streamed body (empty data is ignored).
  virtual void write(std::string data) = 0;
  /// The last chunk; ends the exchange.
  virtual void end_stream() = 0;
  /// Runs `work` on the connection's strand (at once if called there), unless the exchange has ended:
  /// how work from other threads (engine events) reaches the connection without locks.
  virtual void run(std::function<void()> work) = 0;
  /// Called once, on the connection's strand, if the client goes away (or stops reading past the
  /// write timeout) before the exchange ended. Set it before the response can finish.
  virtual void on_disconnect(std::function<void()> callback) = 0;
};

/// Called on the connection's strand; must not block. It answers through the responder, now or later.
using Handler = std::function<void(const Request& request, std::shared_ptr<Responder> responder)>;

struct ServerConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  ///< 0: any free port
  int io_threads = 2;
  size_t max_body_bytes = size_t{4} << 20;
  std::chrono::milliseconds read_timeout{30'000};   ///< a whole request, headers and body (slow clients)
  std::chrono::milliseconds idle_timeout{120'000};  ///< a keep-alive connection between requests
  std::chrono::milliseconds write_timeout{30'000};  ///< one write to a client that stopped reading
  std::chrono::milliseconds drain_timeout{30'000};  ///< on SIGTERM, how long open exchanges may finish
  std::string log_prefix = "tern serve";
};

class Server {
 public:
  explicit Server(ServerConfig config);
  ~Server();

  /// Route table; register before start(). Authentication is the handlers' business (the gateway
  /// knows which schema a refusal must be written in, and who the caller is).
  /// `path` exact, or ending in "/*": every path below it ("/admin/requests/*" takes /admin/requests/abc).
  void route(std::string method, std::string path, Handler handler);
  void set_error_renderer(ErrorRenderer renderer);
  /// Called once on drain, when no exchange is open any more or the drain timeout passed: abort what
  /// is left (its exchanges still get their final writes in the next 300 ms).
  void set_drain_hook(std::function<void()> hook);

  /// Serves HTTPS with this certificate chain and key (PEM); before listen().
  Result<void> enable_tls(const std::string& cert_file, const std::string& key_file);
  bool is_tls() const;

  /// Binds the listening socket; the bound port.
  Result<uint16_t> listen();
  /// Starts the I/O threads and the signal handler; returns at once.
  void start();
  /// Blocks until shutdown has finished (a signal, or request_shutdown()).
  void wait();
  /// Begins a graceful shutdown, as SIGTERM does.
  void request_shutdown();

  /// The I/O threads' executor: clients that relay to this server's connections run on it too.
  boost::asio::any_io_executor executor();

  bool is_draining() const;
  int64_t num_open_connections() const;
  int64_t num_open_exchanges() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::http
