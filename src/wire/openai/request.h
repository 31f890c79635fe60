#pragma once
// Parsing and validating OpenAI request bodies (chat completions and completions) into the neutral
// api::Request. Every field is type- and range-checked; anything unknown or unsupported is a 400 that
// names the field, rather than silently ignored. OpenRouter's routing fields are accepted too:
// `models` (an ordered fallback list) and `provider` {order, only, ignore, allow_fallbacks, sort,
// max_price {prompt, completion}}.

#include <expected>
#include <string_view>

#include "wire/types.h"

namespace tern::wire {

/// Parses a JSON body for `kind`.
std::expected<Request, ApiError> parse_openai_request(RequestKind kind, std::string_view body);

}  // namespace tern::wire
