#pragma once
// The neutral request, event and usage types every layer above the engine shares: the schema codecs
// (wire/openai, wire/anthropic), the gateway (api/), the router's providers (the local engine, remote
// OpenAI- or Anthropic-compatible upstreams), tenants, metering and tern bench. Nothing here is in
// either wire format: a codec parses its schema into these and renders them back.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tern::observe {
class Trace;  // observe/trace.h: a request's timeline
}

namespace tern::wire {

/// A failure as the client will see it, whatever the schema: an HTTP status, a message, and a kind.
/// `type` uses OpenAI's names (invalid_request_error, authentication_error, permission_error,
/// not_found_error, rate_limit_error, server_error, overloaded_error, timeout_error); the Anthropic
/// adapter maps them onto its own.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  ///< the offending request field, if any
  std::string code;
  /// Another deployment might succeed (connect failure, 429, 5xx, timeout) — the router may fall back.
  bool is_retryable = false;
  std::string retry_after;  ///< seconds, from a 429 (Retry-After)
};

inline ApiError bad_request(std::string message, std::string param = {}) {
  return {.status = 400, .message = std::move(message), .type = "invalid_request_error", .param = std::move(param),
          .code = {}, .is_retryable = false, .retry_after = {}};
}

/// An error of any status; the type follows it (429: rate_limit_error, other 4xx: invalid_request_error).
inline ApiError server_error(int status, std::string message, std::string code = {}, bool is_retryable = false) {
  return {.status = status, .message = std::move(message),
          .type = status == 429 ? "rate_limit_error" : status < 500 ? "invalid_request_error" : "server_error",
          .param = {}, .code = std::move(code), .is_retryable = is_retryable, .retry_after = {}};
}

enum class RequestKind { kChat, kCompletion };

/// Stop strings a request may carry, on either API.
constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxStopLength = 256;

/// OpenRouter's `provider` object: which deployments of a model may answer, and in what order.
struct ProviderPreferences {
  std::vector<std::string> order;   ///< deployments to try first, in this order
  std::vector<std::string> only;    ///< if set, only these
  std::vector<std::string> ignore;  ///< never these
  bool allow_fallbacks = true;      ///< false: only the first candidate is tried
  std::string sort;                 ///< "", "price", "throughput" or "latency"
  std::optional<double> max_prompt_price;      ///< USD per 1M input tokens
  std::optional<double> max_completion_price;  ///< USD per 1M output tokens
};

/// Where a tenant's requests may run (tern.yaml `policies:`, per org and per key): deployments are
/// matched on their labels (`region`, `compliance`, any key/value) and kind. The router never sends a
/// request to a deployment one of its policies refuses - not as a fallback either.
struct PlacementPolicy {
  std::string owner;                 ///< "org acme", "key k3a9...": what a refusal names
  std::vector<std::string> regions;  ///< the deployment's `region` label must be one of these (empty: any)
  std::vector<std::pair<std::string, std::string>> labels;  ///< labels the deployment must carry, with these values
  bool never_remote = false;         ///< local models only
};

/// Retention asked for a prefix of the prompt (Anthropic cache_control, OpenAI prompt_cache_retention):
/// the prompt up to the end of the first `chars` bytes of messages[message].content stays cached for
/// `ttl_s` seconds after its last use.
struct CacheBreakpoint {
  int message = -1;    ///< index into messages; -1: the whole prompt (completions, prompt_cache_retention)
  size_t chars = 0;    ///< bytes of that message's content before the breakpoint
  int64_t ttl_s = 300;
};
constexpr int kMaxCacheBreakpoints = 4;  ///< Anthropic's limit

/// How to pick tokens, as the request asked (the local engine's sampler takes the same values).
struct Sampling {
  float temperature = 1.0f;         ///< 0: greedy
  int32_t top_k = 0;                ///< 0: off
  float top_p = 1.0f;               ///< 1: off
  float min_p = 0.0f;               ///< 0: off
  float repetition_penalty = 1.0f;  ///< 1: off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;                ///< with Request::seed_given
};

/// A function the model may call (OpenAI's tools[].function, Anthropic's tools[]).
struct ToolDefinition {
  std::string name;  ///< ^[a-zA-Z0-9_-]{1,64}$
  std::string description;
  /// The arguments' JSON Schema, its keys in the client's order (properties are generated in it).
  nlohmann::ordered_json parameters = nlohmann::ordered_json::object();
  bool strict = false;  ///< OpenAI's strict: the arguments must validate against it
};

/// Whether, and which, tools the reply must call.
struct ToolChoice {
  enum class Mode { kAuto, kNone, kRequired, kNamed };
  Mode mode = Mode::kAuto;
  std::string name;      ///< with kNamed
  bool parallel = true;  ///< several calls in one reply (OpenAI's parallel_tool_calls, Anthropic's !disable_parallel_tool_use)
};

/// The shape the reply's text must have (OpenAI's response_format).
struct ResponseFormat {
  enum class Kind { kText, kJsonObject, kJsonSchema };
  Kind kind = Kind::kText;
  std::string name;  ///< json_schema.name
  std::string description;
  /// json_schema.schema (null: any JSON object), its keys in the client's order: properties are
  /// generated in the order the schema names them.
  nlohmann::ordered_json schema;
  bool strict = false;
};

/// Tool names, as both APIs allow them.
bool is_valid_tool_name(std::string_view name);

struct Request {
  RequestKind kind = RequestKind::kChat;
  std::string model;                       ///< the public model name asked for
  std::vector<std::string> fallback_models;  ///< OpenRouter `models`: tried in order after `model`
  ProviderPreferences provider;
  /// chat, in OpenAI's message shape (what chat templates take too): [{role: system | user | assistant |
  /// tool, content (a string; an assistant's may be empty), name?, tool_calls? (assistant: [{id, type:
  /// "function", function: {name, arguments (JSON text)}}]), tool_call_id? (tool)}], system first if any
  nlohmann::ordered_json messages;
  std::optional<std::string> prompt;    ///< completion: text prompt
  std::vector<int32_t> prompt_tokens;   ///< completion: a prompt given as token ids (local models only)
  std::optional<int64_t> max_tokens;    ///< absent: fill the context (chat) or 16 (completions)
  bool stream = false;
  bool include_usage = false;
  int top_logprobs = -1;  ///< -1: no logprobs
  bool seed_given = false;
  Sampling sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  /// tern's extension: speculative decoding asked for (true) or refused (false); unset: the server's default.
  std::optional<bool> speculative;
  std::string cache_salt;
  std::vector<CacheBreakpoint> cache_breakpoints;
  std::string prompt_cache_key;  ///< OpenAI's routing hint: prefix-affinity routes by it instead of the prompt
  std::string pin_owner;         ///< set by the gateway: whose pinned-cache quota the breakpoints use (the org)
  std::string adapter;  ///< set by the router for a LoRA adapter's name: the base model's engine applies it
  std::vector<ToolDefinition> tools;
  ToolChoice tool_choice;
  ResponseFormat response_format;
  /// Set by the gateway while traces are kept or exported: the router and the providers add to it.
  std::shared_ptr<observe::Trace> trace;
  /// Set by the gateway from the caller's org and key: every one must allow a deployment.
  std::vector<PlacementPolicy> placement;

  /// Whether the reply is constrained (tools it may call, or a JSON format).
  bool wants_tools() const { return !tools.empty() && tool_choice.mode != ToolChoice::Mode::kNone; }
  bool wants_json() const { return response_format.kind != ResponseFormat::Kind::kText; }
};

/// One sampled token's log-probability, as text (providers resolve token ids themselves).
struct TokenLogprob {
  std::string bytes;        ///< the token as it prints (special tokens by name)
  int64_t text_length = 0;  ///< bytes it adds to the output text (0 for special tokens)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  ///< most likely tokens, best first
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;       ///< prompt tokens read from a prompt cache
  int64_t cache_write_tokens = 0;  ///< prompt tokens written to a provider's prompt cache
  int64_t cache_write_1h_tokens = 0;  ///< of those, written with a retention of an hour or more
  int64_t retention_denied_tokens = 0;  ///< asked to be retained, but over the org's quota: cached as usual
  std::optional<double> cost_usd;  ///< from the deployment's prices; set by the router
};

/// A piece of a tool call as it streams: the first piece of a call names it (id, name), later ones add
/// to its arguments (JSON text, split anywhere).
struct ToolCallDelta {
  int index = 0;  ///< which call of the reply: 0, 1, ...
  std::string id;
  std::string name;
  std::string arguments;
};

/// A whole tool call, its pieces put together.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  ///< JSON text
};

/// Adds streamed pieces to the calls they belong to.
void add_tool_call_deltas(std::vector<ToolCall>& calls, const std::vector<ToolCallDelta>& deltas);

/// Token counts as a response reported them so far, -1 where it gave no figure: a stream reports the
/// prompt side and the output at different times (Anthropic's message_start and message_delta, an
/// OpenAI usage chunk at the end), and some servers report nothing.
struct UsageReport {
  int64_t prompt_tokens = -1;        ///< every prompt token, cached or not
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;        ///< read from a prompt cache
  int64_t cache_write_tokens = -1;   ///< written to a prompt cache
  int64_t cache_write_1h_tokens = -1;  ///< of those, retained an hour or more

  /// The figures `later` gives (>= 0) over these.
  void merge(const UsageReport& later) {
    for (auto [into, from] : {std::pair{&prompt_tokens, later.prompt_tokens}, {&completion_tokens, later.completion_tokens},
                              {&cached_tokens, later.cached_tokens}, {&cache_write_tokens, later.cache_write_tokens},
                              {&cache_write_1h_tokens, later.cache_write_1h_tokens}}) {
      if (from >= 0) *into = from;
    }
  }
  /// The figures given, written over `usage`'s.
  void apply_to(Usage& usage) const {
    for (auto [into, from] : {std::pair{&usage.prompt_tokens, prompt_tokens}, {&usage.completion_tokens, completion_tokens},
                              {&usage.cached_tokens, cached_tokens}, {&usage.cache_write_tokens, cache_write_tokens},
                              {&usage.cache_write_1h_tokens, cache_write_1h_tokens}}) {
      if (from >= 0) *into = from;
    }
  }
};

/// What a provider streams back: new text (possibly empty), then a last event with `finished`.
struct Event {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  std::vector<ToolCallDelta> tool_calls;  ///< pieces of tool calls
  bool finished = false;
  std::string finish_reason;      ///< "stop", "length", "tool_calls", "abort", "error"; with finished
  std::string stop_sequence;      ///< with finish_reason "stop": the stop string that ended it (empty: the end of the turn)
  std::optional<ApiError> error;  ///< the request failed (with finished)
  /// With finished: the request's whole usage. Before: the prompt's counts (prompt, cached, written)
  /// as far as the provider knows them yet — the local engine and an Anthropic upstream know them
  /// from the first event on (Anthropic's message_start carries them); zero otherwise.
  Usage usage;
  std::string model;              ///< the public model name that answered; set by the router
  std::string deployment;         ///< the deployment that answered; set by the router
  std::string adapter;            ///< with finished: the LoRA adapter that answered (empty: the base model); set by the local provider
  std::string region;             ///< the answering deployment's `region` label (empty: none); set by the router
  double queued_ms = -1;          ///< with finished, local models: waiting before its first computed step (< 0: not known)
};

/// Called on a provider's thread; must not block.
using EventSink = std::function<void(Event&&)>;

/// The last event of a request that failed before it produced anything.
inline Event final_error_event(ApiError error) {
  Event event;
  event.finished = true;
  event.finish_reason = "error";
  event.error = std::move(error);
  return event;
}

/// What a whole (non-streamed) response holds, gathered from its events.
struct Reply {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  std::vector<ToolCall> tool_calls;

  void add(Event& event) {
    text += event.text;
    for (auto& lp : event.logprobs) logprobs.push_back(std::move(lp));
    add_tool_call_deltas(tool_calls, event.tool_calls);
  }
};

}  // namespace tern::wire
