#pragma once
// The APIs a benchmark target speaks (OpenAI chat or completions, Anthropic Messages) and what a
// benchmark sends and reads in each: the request is built as a neutral wire::Request and written, and
// the response stream read, by the schema's codec (wire/openai/client.h, wire/anthropic/client.h), the
// same the gateway's remote provider uses.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "wire/stream.h"

namespace tern::bench {

/// "chat" (OpenAI /chat/completions), "completions" (OpenAI /completions), "messages" (Anthropic /messages).
enum class ApiKind { kChat, kCompletions, kMessages };

Result<ApiKind> parse_api_kind(std::string_view name);
std::string_view api_kind_name(ApiKind kind);
/// Path below the base URL ("/v1"): "/chat/completions", "/completions" or "/messages".
std::string_view api_path(ApiKind kind);
/// Chat and Messages send a conversation (messages); completions one growing prompt.
inline bool sends_messages(ApiKind kind) { return kind != ApiKind::kCompletions; }

struct ChatMessage {
  std::string role;
  std::string content;
};

/// What one request sends: chat messages or a completions prompt (the other stays empty).
struct RequestContent {
  std::vector<ChatMessage> messages;
  std::string prompt;
};

struct RequestBodyOptions {
  int max_tokens = 128;
  /// vLLM / SGLang / llama.cpp extension asking the server to generate exactly max_tokens. Off by
  /// default because strict servers (OpenAI itself) reject unknown fields.
  bool ignore_eos = false;
  std::optional<double> temperature;
  /// Ask the server to retain the prompt in its cache (empty: nothing sent). OpenAI APIs: sent as
  /// prompt_cache_retention ("24h" | "in_memory"); Messages: the TTL of cache_control breakpoints
  /// ("5m" | "1h") on the system prompt and the last message.
  std::string cache_retention;
  std::string prompt_cache_key;  ///< OpenAI's routing hint (empty: not sent; Messages has none)
};

/// Which cache_retention values an API takes; the error names the value and the API.
Result<void> check_cache_retention(ApiKind kind, std::string_view retention);
/// True when `retention` keeps prompts an hour or more (its writes are priced at cache_write_1h).
bool is_long_retention(std::string_view retention);

/// JSON body of a streaming request; OpenAI bodies always ask for usage in the stream (`stream_options`).
/// Retention: OpenAI's "24h" as prompt_cache_retention ("in_memory", the default, is not sent);
/// Messages' TTL as cache_control breakpoints on the system prompt and at the end of the conversation.
std::string build_request_body(ApiKind kind, std::string_view model, const RequestContent& content,
                               const RequestBodyOptions& options);

/// What one `data:` payload of a response stream carried, through the schema's codec (wire/): text,
/// reasoning, usage, an in-stream error, the end (OpenAI's `[DONE]`, Anthropic's message_stop). A
/// payload that is not JSON (or not the expected shape) is an error.
Result<wire::StreamDelta> parse_stream_chunk(std::string_view data, ApiKind kind);

}  // namespace tern::bench
