#pragma once
// Parsing and validating OpenAI request bodies (chat completions and completions) into what the
// engine runs. Every field is type- and range-checked; anything unknown or unsupported is a 400 that
// names the field, rather than silently ignored.

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api_error.h"
#include "engine/engine.h"

namespace tern::api {

enum class Endpoint { kChat, kCompletions };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;
  nlohmann::ordered_json messages;      ///< chat: validated messages, content flattened to strings
  std::optional<std::string> prompt;    ///< completions: text prompt
  std::vector<int32_t> prompt_tokens;   ///< completions: a prompt given as token ids
  std::optional<int64_t> max_tokens;    ///< absent: fill the context (chat) or 16 (completions)
  bool stream = false;
  bool include_usage = false;
  int top_logprobs = -1;  ///< -1: no logprobs
  bool seed_given = false;
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  std::string cache_salt;
};

/// Parses a JSON body for `endpoint`.
std::expected<OpenAiRequest, ApiError> parse_openai_request(Endpoint endpoint, std::string_view body);

}  // namespace tern::api
