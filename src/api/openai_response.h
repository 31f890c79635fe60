#pragma once
// OpenAI response bodies and SSE chunks for one request: chat.completion / chat.completion.chunk and
// text_completion, with usage (prompt_tokens_details.cached_tokens always present) and logprobs.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/openai_request.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace tern::api {

class ResponseBuilder {
 public:
  ResponseBuilder(const OpenAiRequest& request, std::string model_name, const tok::Tokenizer& tokenizer);

  /// The first streamed chunk of a chat (the assistant role, empty content).
  nlohmann::json role_chunk() const;
  /// A streamed chunk with new text; finish_reason empty for none.
  nlohmann::json delta_chunk(const std::string& text, const std::vector<engine::TokenLogprob>& logprobs,
                             const std::string& finish_reason);
  /// The extra last chunk of stream_options.include_usage: no choices, the usage.
  nlohmann::json usage_chunk(const engine::Usage& usage) const;
  /// The whole non-streamed response.
  nlohmann::json full_response(const std::string& text, const std::vector<engine::TokenLogprob>& logprobs,
                               const std::string& finish_reason, const engine::Usage& usage);

  static nlohmann::json usage_json(const engine::Usage& usage);
  static std::string sse(const nlohmann::json& payload) {
    return "data: " + payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
  }

 private:
  nlohmann::json envelope(bool chunk) const;
  nlohmann::json logprobs_json(const std::vector<engine::TokenLogprob>& logprobs);
  nlohmann::json token_entry(int32_t token, float logprob) const;

  const OpenAiRequest& request_;
  std::string id_;
  int64_t created_;
  std::string model_;
  const tok::Tokenizer& tokenizer_;
  int64_t text_offset_ = 0;  // completions logprobs: offset of the next token's text
};

}  // namespace tern::api
