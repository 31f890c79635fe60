#pragma once
// The wire formats as a benchmark client sees them: the streaming request body for OpenAI chat or
// completions or Anthropic Messages (anthropic_stream.cpp), and what each `data:` payload of the
// response stream tells us (text, usage, errors, the end).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "util/result.h"

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
std::string build_request_body(ApiKind kind, std::string_view model, const RequestContent& content,
                               const RequestBodyOptions& options);

/// Token usage as the server reports it. -1 where the server gave no figure.
struct Usage {
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;       ///< usage.prompt_tokens_details.cached_tokens
  int64_t cache_write_tokens = -1;  ///< cache_creation_input_tokens or prompt_tokens_details.cache_write_tokens
  int64_t cache_write_1h_tokens = -1;  ///< of those, retained an hour or more (cache_creation.ephemeral_1h_input_tokens)

  /// Fills the fields `later` reports (>= 0) over these: Messages streams report the prompt side in
  /// message_start and the output in message_delta.
  void merge(const Usage& later);
};

/// What one `data:` payload carried.
struct StreamChunk {
  std::string text;                ///< generated text in this chunk (content + reasoning), may be empty
  std::optional<Usage> usage;      ///< present on the usage chunk
  std::optional<std::string> error;  ///< an in-stream error object's message
  bool is_done = false;            ///< the `[DONE]` sentinel (OpenAI) or message_stop (Messages)
};

/// Parses one SSE data payload. A payload that is not JSON (or not the expected shape) is an error.
Result<StreamChunk> parse_stream_chunk(std::string_view data, ApiKind kind);

namespace detail {
/// `object[key]` when it is an integer, else `fallback` (servers leave fields out or send nulls).
int64_t int_or(const nlohmann::json& object, const char* key, int64_t fallback);
// Anthropic Messages (anthropic_stream.cpp).
std::string build_messages_body(std::string_view model, const RequestContent& content, const RequestBodyOptions& options);
Result<StreamChunk> parse_messages_event(std::string_view data);
}  // namespace detail

}  // namespace tern::bench
