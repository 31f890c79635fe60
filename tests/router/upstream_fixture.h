#pragma once
// A fake upstream for the gateway's tests: an OpenAI-compatible (/v1/chat/completions,
// /v1/completions) and Anthropic-compatible (/v1/messages) streaming server whose behaviour is chosen
// by the request's "model", so one server can inject every fault the router must survive:
//
//   ok                 streams `num_chunks` chunks " w0" " w1" ... then usage and the end marker
//   fail-500           HTTP 500
//   fail-400           HTTP 400 (the request's fault: must not be retried), in the endpoint's error shape
//   fail-413           HTTP 413, likewise (OpenAI's shape with param and code; Anthropic's request_too_large)
//   tools              an agent's tool: calls the request's tools (two at most, one without parallel
//                      calls; ids call_N / toolu_N; arguments {"city": "Paris"} in two pieces); a turn
//                      that hands tool results back gets the text "result: <results joined by '; '>" 
//   rate-limit-once    HTTP 429 with Retry-After: 1 the first time per server, then as ok
//   hang               reads the request and sends nothing until the client leaves
//   reset-midstream    two chunks, then a TCP reset
//   trickle            chunks 200 ms apart
//   bad-json-first     a malformed data payload before any text
//   bad-json-midstream two chunks, then a malformed data payload
//   truncated          two chunks, then a clean close without the end marker
//   bad-chunking       one chunk, then a chunk-size line that is not hex (broken HTTP framing)
//   GET /ready         200 (a healthy replica); any other GET: 503
//
// With a certificate and key it speaks HTTPS (OpenSSL) instead.
//
// Plain blocking sockets, a thread per connection: simple enough to be obviously right. Every request
// is logged (path, model, body) so tests can count attempts — nothing may be sent twice after it began
// streaming.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tern::testing {

struct UpstreamRequest {
  std::string path;
  std::string model;
  std::string body;
  std::string authorization;  ///< Authorization or x-api-key header
  bool client_left = false;   ///< the client closed the connection before the response ended
};

class UpstreamFixture {
 public:
  /// `cert_file` / `key_file` (PEM): serve HTTPS.
  explicit UpstreamFixture(int num_chunks = 4, const std::string& cert_file = {}, const std::string& key_file = {});
  ~UpstreamFixture();

  uint16_t port() const { return port_; }
  std::string base_url() const { return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_) + "/v1"; }
  std::vector<UpstreamRequest> requests() const;
  int count(const std::string& model) const;
  /// Waits up to `ms` for a `hang` request's client to leave; whether it did.
  bool wait_client_left(const std::string& model, int ms) const;

 private:
  void accept_loop();
  void serve(int fd);

  int num_chunks_;
  void* tls_ = nullptr;  // SSL_CTX*
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> rate_limited_{0};
  mutable std::mutex mutex_;
  std::vector<UpstreamRequest> requests_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace tern::testing
