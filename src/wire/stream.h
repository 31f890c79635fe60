#pragma once
// The client side of the schemas, common to both: what one payload of a response stream said (an
// OpenAI `data:` chunk, an Anthropic event), in neutral terms, and an error response's body read back
// into an ApiError. The router's remote provider and tern bench read upstream responses through
// these (wire/openai/client.h, wire/anthropic/client.h).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wire/types.h"

namespace tern::wire {

struct StreamDelta {
  std::string text;           ///< generated text
  std::string reasoning;      ///< reasoning / thinking text a server streams apart from the text
  std::string finish_reason;  ///< neutral ("stop", "length"); empty until the stream says why it ends
  std::vector<ToolCallDelta> tool_calls;  ///< pieces of tool calls (Anthropic: see AnthropicStreamReader)
  std::string stop_sequence;         ///< the stop string that ended the reply, where the server says so
  std::optional<UsageReport> usage;  ///< on the payloads that carry usage
  bool is_end = false;        ///< OpenAI's `[DONE]`, Anthropic's message_stop

  struct Error {
    std::string type;  ///< as the server named it ("overloaded_error", "server_error"); may be empty
    std::string message;
  };
  std::optional<Error> error;  ///< an error reported inside the stream
};

/// An error response's body — OpenAI's {"error": {message, type, param, code}} or Anthropic's
/// {"type": "error", "error": {type, message}} — as an ApiError of `status` carrying the server's
/// message, param and code; types in OpenAI's names (ApiError's convention: Anthropic's
/// request_too_large and the like become invalid_request_error). nullopt: neither shape.
std::optional<ApiError> parse_error_body(int status, std::string_view body);

}  // namespace tern::wire
