#pragma once
// The HTTP front of `tern serve`: an event-driven server (Boost.Beast over Asio) with a small fixed
// number of I/O threads, so thousands of streaming connections cost a socket and a few buffers each.
//
//   POST /v1/chat/completions, /v1/completions   OpenAI-compatible, streaming (SSE) or not
//   GET  /v1/models                              the served model
//   GET  /health                                 200 while the process is up
//   GET  /ready                                  200 once the model is loaded, 503 before and while draining
//   GET  /metrics                                Prometheus text (engine metrics + connections)
//
// Handlers reach the engine only through Engine::submit/cancel; the engine's events come back posted
// onto the connection's strand. Slow clients are bounded by a read timeout (whole request) and a write
// timeout (each write); a client that disconnects mid-generation has its request cancelled at once.
// SIGTERM/SIGINT: stop accepting, let in-flight requests finish up to the drain timeout, then exit.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "api/served_model.h"
#include "util/result.h"

namespace tern::api {

struct ServerConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  ///< 0: any free port
  int io_threads = 2;
  size_t max_body_bytes = size_t{4} << 20;
  std::chrono::milliseconds read_timeout{30'000};   ///< a whole request, headers and body (slow clients)
  std::chrono::milliseconds idle_timeout{120'000};  ///< a keep-alive connection between requests
  std::chrono::milliseconds write_timeout{30'000};  ///< one write to a client that stopped reading
  std::chrono::milliseconds drain_timeout{30'000};  ///< on SIGTERM, how long in-flight requests may finish
};

class HttpServer {
 public:
  explicit HttpServer(ServerConfig config);
  ~HttpServer();

  /// Binds the listening socket; the bound port.
  Result<uint16_t> listen();
  /// Starts the I/O threads and the signal handler; returns at once.
  void start();
  /// Makes the model servable (until then generation endpoints answer 503 and /ready 503).
  void set_model(ServedModel* model);
  /// Blocks until shutdown has finished (a signal, or request_shutdown()).
  void wait();
  /// Begins a graceful shutdown, as SIGTERM does.
  void request_shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::api
