#pragma once
// How a model writes a tool call, per model family — chosen from its chat template's text, since a
// GGUF says nothing else about it:
//
//   family                      call syntax (what the model writes; a reply may hold several)
//   Hermes / Qwen 2.5 / Qwen 3  <tool_call>\n{"name": "get_weather", "arguments": {...}}\n</tool_call>
//   Llama 3.1 / 3.2 / 3.3       {"name": "get_weather", "parameters": {...}}
//   generic (no tool syntax:    the Hermes syntax, which tern describes to the model in a system
//   SmolLM2, Gemma 3, Mistral)  message it writes itself (the template never sees `tools`)
//
// The syntax is both what the parser reads back (parser.h) and what the grammar forces or allows
// (grammar_spec.h), so the two always agree.

#include <string>
#include <string_view>

namespace tern::tool_calls {

enum class Family { kHermes, kLlama3, kGeneric };

struct Format {
  Family family = Family::kGeneric;
  /// The template renders `tools` and tool-call messages itself; otherwise tern writes them as text.
  bool is_native = false;
  /// Text that opens a call: free text runs until it appears.
  std::string trigger;
  /// A call is `call_prefix` NAME `arguments_prefix` ARGUMENTS-JSON `call_suffix`.
  std::string call_prefix;
  std::string arguments_prefix;
  std::string call_suffix;
  /// Several calls in one reply (Llama 3.x templates take one call per assistant turn).
  bool allows_parallel = true;
};

/// The format for a chat template (its source text).
Format detect_format(std::string_view template_source);

/// "hermes", "llama3", "generic": for logs and docs.
const char* family_name(Family family);

}  // namespace tern::tool_calls
