#pragma once
// A deterministic OpenAI-compatible streaming server for testing `tern bench`: every response's first
// chunk leaves `ttft_ms` after its request arrived and each later chunk `itl_ms` after the one before,
// on an absolute schedule (chunk k at arrival + ttft + k * itl) so timer slop never accumulates. Known
// delays make the benchmark's measurements checkable against the truth.
//
//   POST /v1/chat/completions, /v1/completions   streaming (SSE, chunked) or not; max_tokens honoured
//   GET  /v1/models, /health
//   model "fail-500" -> HTTP 500; model "fail-midstream" -> an error object after the first chunk
//
// Tokens are whitespace words: prompt_tokens counts the words of the prompt (all message contents), each
// generated token is the word " tok". A simulated prefix cache reports cached_tokens: the prompt's words
// in blocks of `cache_block_words`, a block cached when the same block-aligned prefix was seen before.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tern::bench::testing {

struct FixtureConfig {
  double ttft_ms = 20;
  double itl_ms = 5;
  int tokens_per_chunk = 1;
  int default_output_tokens = 16;  ///< when the request has no max_tokens
  int cache_block_words = 16;
  std::string address = "127.0.0.1";
  uint16_t port = 0;  ///< 0: any free port
};

/// What the server saw of one request, in steady_clock nanoseconds since its epoch (same clock as the
/// client in the same process).
struct FixtureRequestLog {
  int64_t arrival_ns = 0;      ///< request fully read
  int64_t first_write_ns = 0;  ///< first content chunk handed to the socket
  int64_t last_write_ns = 0;   ///< [DONE] handed to the socket
  std::vector<int64_t> chunk_write_ns;  ///< each content chunk handed to the socket
  std::string last_input;      ///< the last message's content (chat) or the prompt (completions)
  int num_output_tokens = 0;
  int num_prompt_tokens = 0;
  int num_cached_tokens = 0;
  std::string model;
  std::string body;  ///< the request body as sent
};

class FixtureServer {
 public:
  explicit FixtureServer(FixtureConfig config);
  ~FixtureServer();
  FixtureServer(const FixtureServer&) = delete;
  FixtureServer& operator=(const FixtureServer&) = delete;

  /// Binds and starts serving on its own thread; returns the bound port.
  uint16_t start();
  /// Stops the thread (also done by the destructor).
  void stop();
  uint16_t port() const { return port_; }
  std::string base_url() const;
  /// Copy of the per-request log, in arrival order.
  std::vector<FixtureRequestLog> log() const;
  const FixtureConfig& config() const { return config_; }

  struct Impl;

 private:
  FixtureConfig config_;
  uint16_t port_ = 0;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace tern::bench::testing
