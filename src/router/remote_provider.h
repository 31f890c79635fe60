#pragma once
// A remote OpenAI- or Anthropic-compatible endpoint (another tern, vLLM, llama-server, OpenAI,
// Anthropic, OpenRouter...) as a Provider. The neutral request is written in the upstream's own
// schema, always streamed (a non-streaming client gets the events aggregated by the gateway), and the
// upstream's SSE is parsed back into neutral events — so either client API works against either kind
// of upstream.
//
// Failures, as the router sees them (retryable ones may be retried or fall back to the next
// deployment, but only while nothing has reached the client):
//   connect error, timeout before the first byte, 429 (with its Retry-After), 5xx,
//   401/403/404 (this deployment is misconfigured; another may work)    → retryable
//   400/413/422 (the request itself is at fault)                        → passed through, final
//   after the first text: reset, malformed SSE, a stream that ends early → an error event ending the
//                                                                         client's stream
//
// Each provider runs on one strand (of the server's I/O threads, or of its own thread); submit() and
// cancel() post onto it.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "router/provider.h"
#include "util/result.h"

namespace tern::router {

enum class RemoteKind { kOpenAi, kAnthropic };

struct RemoteConfig {
  std::string name;           ///< the deployment, for messages
  RemoteKind kind = RemoteKind::kOpenAi;
  std::string base_url;       ///< e.g. http://10.0.0.5:8000/v1 or https://api.anthropic.com/v1
  std::string api_key;        ///< sent as "Authorization: Bearer" (openai) or "x-api-key" (anthropic)
  std::string upstream_model;  ///< the model name the upstream knows
  std::string ca_file;        ///< https: a PEM CA bundle to trust instead of the system store
  size_t max_connections = 64;
  std::chrono::milliseconds first_byte_timeout{30'000};  ///< until the response head and first event
  std::chrono::milliseconds timeout{600'000};            ///< the whole exchange
  int64_t default_max_tokens = 4096;  ///< Anthropic requires max_tokens; used when the client gave none
  /// Active health check: GET base_url's origin + this path (e.g. "/ready" of a tern or vLLM replica)
  /// every `health_interval`; a non-2xx or no answer marks the deployment unhealthy. Empty: none.
  std::string health_path;
  std::chrono::milliseconds health_interval{5'000};
};

/// Connects lazily; fails only on a bad URL or an unresolvable host. With an executor (the HTTP
/// server's), the provider runs on a strand of it; without, on a thread of its own.
Result<std::shared_ptr<Provider>> make_remote_provider(RemoteConfig config, std::optional<boost::asio::any_io_executor> executor = {});

}  // namespace tern::router
