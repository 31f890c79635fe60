#pragma once
// The Anthropic Messages API (POST /v1/messages) as a schema adapter: the request body parsed into the
// neutral api::Request, and events rendered back in Anthropic's shapes.
//
// Stream order, as Anthropic sends it:
//   message_start ─► content_block_start ─► ping ─► content_block_delta (text_delta) ... ─►
//   content_block_stop ─► message_delta (stop_reason, cumulative usage) ─► message_stop
// An error after the stream began is an `error` event; before, {"type":"error","error":{type,message}}
// with Anthropic's status codes. Usage: input_tokens (not from or into a cache), output_tokens,
// cache_read_input_tokens, cache_creation_input_tokens.

#include <expected>
#include <map>
#include <string_view>

#include <nlohmann/json.hpp>

#include "wire/renderer.h"

namespace tern::wire {

std::expected<Request, ApiError> parse_anthropic_request(std::string_view body);

class AnthropicRenderer final : public Renderer {
 public:
  explicit AnthropicRenderer(const Request& request);

  const std::string& id() const override { return id_; }
  std::string stream_start(const Event& first) override;
  std::string stream_event(const Event& event) override;
  std::string stream_error(const ApiError& error) override;
  std::string full_response(const Reply& reply, const Event& last) override;
  http::Response error_response(const ApiError& error) const override;

  static nlohmann::json error_json(const ApiError& error);
  static nlohmann::json usage_json(const Usage& usage);
  /// OpenAI-style finish reason → Anthropic stop_reason.
  static std::string stop_reason(const std::string& finish_reason);
  /// {stop_reason, stop_sequence} of a finished message.
  static nlohmann::json stop_fields(const Event& last);

 private:
  std::string close_block();

  std::string id_;
  std::string model_;
  // Stream state: the one open content block, and each tool call's block.
  int open_block_ = -1;
  bool open_is_tool_ = false;
  int next_block_ = 0;
  std::map<int, int> tool_blocks_;  // tool call index -> block index
};

}  // namespace tern::wire
