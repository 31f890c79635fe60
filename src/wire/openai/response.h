#pragma once
// OpenAI response bodies and SSE chunks for one request: chat.completion / chat.completion.chunk and
// text_completion, with usage (prompt_tokens_details.cached_tokens always present, `cost` in USD when
// the deployment has prices) and logprobs; errors as {"error": {message, type, param, code}}.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wire/renderer.h"

namespace tern::wire {

class OpenAiRenderer final : public Renderer {
 public:
  explicit OpenAiRenderer(const Request& request);

  const std::string& id() const override { return id_; }
  std::string stream_start(const Event& first) override;
  std::string stream_event(const Event& event) override;
  std::string stream_error(const ApiError& error) override;
  std::string full_response(const Reply& reply, const Event& last) override;
  http::Response error_response(const ApiError& error) const override;

  static nlohmann::json usage_json(const Usage& usage);
  static nlohmann::json error_json(const ApiError& error);

 private:
  nlohmann::json envelope(bool chunk) const;
  nlohmann::json logprobs_json(const std::vector<TokenLogprob>& logprobs);
  nlohmann::json delta_chunk(const std::string& text, const std::vector<TokenLogprob>& logprobs, const std::string& finish_reason);

  RequestKind kind_;
  bool include_usage_;
  int top_logprobs_;
  std::string id_;
  int64_t created_;
  std::string model_;
  std::string provider_;  // the deployment that answered, once known
  int64_t text_offset_ = 0;  // completions logprobs: offset of the next token's text
};

}  // namespace tern::wire
