#pragma once
// Anthropic's Messages schema from the client side: the streaming request body for a neutral Request
// and what each event of the response stream says. The router's remote provider speaks to Anthropic
// upstreams with these, and tern bench to `messages` targets.

#include <cstdint>
#include <expected>
#include <map>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"
#include "wire/stream.h"
#include "wire/types.h"

namespace tern::wire {

/// The body of a streaming POST /messages for `request` (a chat), naming `model`. System messages go
/// to `system`; the others become user and assistant turns of text blocks (consecutive turns of one
/// role merged, a tool result read as a user turn, as Anthropic wants them alternating). Cache
/// breakpoints become cache_control marks where they fall: on the block that ends at one (a block is
/// split where one falls inside it), the top-level form for the end of the conversation; TTLs of an
/// hour or more are "1h", shorter ones "5m". `max_tokens` is required by Anthropic: the request's, or
/// `default_max_tokens`. An error: a text completion, or no user or assistant turn.
std::expected<nlohmann::json, ApiError> anthropic_request_body(const Request& request, std::string_view model, int64_t default_max_tokens);

/// One event of a Messages stream: message_start (the prompt side of usage), content_block_delta
/// (text; thinking as reasoning), message_delta (stop_reason as a neutral finish reason, the output
/// count), message_stop (the end), error. Other events (ping, content_block_start / _stop) carry
/// nothing. An error: not a JSON object with a type.
Result<StreamDelta> parse_anthropic_stream_event(std::string_view data);

/// The events of one Messages stream, read in order: as parse_anthropic_stream_event, with tool calls
/// numbered 0, 1, ... in the order their tool_use blocks open (the neutral index) instead of by block.
class AnthropicStreamReader {
 public:
  Result<StreamDelta> read(std::string_view data);

 private:
  std::map<int, int> call_of_block_;  // content block index -> tool call index
};

/// Anthropic's usage object: input_tokens counts only the prompt tokens neither read from nor written
/// to a cache, so the whole prompt is the sum of the three.
UsageReport anthropic_usage_report(const nlohmann::json& usage);

}  // namespace tern::wire
