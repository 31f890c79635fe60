#pragma once
// OpenAI's schema from the client side: the streaming request body for a neutral Request (chat or
// completions) and what each `data:` payload of the response stream says. The router's remote
// provider speaks to OpenAI-compatible upstreams with these, and tern bench to its targets.

#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"
#include "wire/stream.h"
#include "wire/types.h"

namespace tern::wire {

/// The body of a streaming /chat/completions or /completions request for `request`, naming `model`
/// (the upstream's name for it). Usage is always asked for in the stream (stream_options); sampling
/// fields are sent only when they differ from the defaults (top_k, min_p, repetition_penalty and
/// ignore_eos are extensions vLLM, SGLang, llama-server and tern understand); retention of the whole
/// prompt as prompt_cache_retention "24h"; prompt_cache_key as given.
/// Keys keep their order (a json_schema's properties are generated in the order it names them).
nlohmann::ordered_json openai_request_body(const Request& request, std::string_view model);

/// One `data:` payload of an OpenAI stream: text (the first choice's delta.content or text),
/// reasoning (delta.reasoning_content or reasoning), finish_reason, usage, an in-stream error, or the
/// `[DONE]` end. An error: the payload is not a JSON object.
Result<StreamDelta> parse_openai_stream_chunk(std::string_view data);

/// OpenAI's usage object (prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens and
/// cache_write_tokens; Anthropic's cache field names, which some gateways pass through, as a fallback).
UsageReport openai_usage_report(const nlohmann::json& usage);

}  // namespace tern::wire
