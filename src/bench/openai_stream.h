#pragma once
// The OpenAI-compatible wire format as a benchmark client sees it: the streaming request body for chat
// or completions, and what each `data:` chunk of the response stream tells us (text, usage, errors).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace tern::bench {

enum class ApiKind { kChat, kCompletions };

Result<ApiKind> parse_api_kind(std::string_view name);
std::string_view api_kind_name(ApiKind kind);
/// Path below the base URL ("/v1"): "/chat/completions" or "/completions".
std::string_view api_path(ApiKind kind);

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
  /// OpenAI's prompt_cache_retention ("24h": keep the prompt cached a day; empty: not sent).
  std::string prompt_cache_retention;
  std::string prompt_cache_key;  ///< OpenAI's routing hint (empty: not sent)
};

/// JSON body of a streaming request; always asks for usage in the stream (`stream_options`).
std::string build_request_body(ApiKind kind, std::string_view model, const RequestContent& content,
                               const RequestBodyOptions& options);

/// Token usage as the server reports it. -1 where the server gave no figure.
struct Usage {
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;       ///< usage.prompt_tokens_details.cached_tokens
  int64_t cache_write_tokens = -1;  ///< cache_creation_input_tokens or prompt_tokens_details.cache_write_tokens
};

/// What one `data:` payload carried.
struct StreamChunk {
  std::string text;                ///< generated text in this chunk (content + reasoning), may be empty
  std::optional<Usage> usage;      ///< present on the usage chunk
  std::optional<std::string> error;  ///< an in-stream error object's message
  bool is_done = false;            ///< the `[DONE]` sentinel
};

/// Parses one SSE data payload. A payload that is not JSON (or not the expected shape) is an error.
Result<StreamChunk> parse_stream_chunk(std::string_view data, ApiKind kind);

}  // namespace tern::bench
