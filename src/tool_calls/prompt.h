#pragma once
// A conversation with tools, made ready for a chat template. A template with tool syntax of its own
// (format.is_native) gets `tools` in OpenAI's shape and the messages as Hugging Face templates expect
// them (a call's arguments as an object, not JSON text). A template without it gets no `tools`: the
// tools are described in the system message, past calls are written into the assistant's text in the
// Hermes syntax and tool results become user turns wrapped in <tool_response> — so any template that
// renders system, user and assistant turns (SmolLM2's, Gemma 3's) can carry an agent's conversation.

#include <span>

#include <nlohmann/json.hpp>

#include "tool_calls/format.h"
#include "wire/types.h"

namespace tern::tool_calls {

/// What a chat template is given: the messages, and `tools` (null when it is not to see any).
struct TemplateInput {
  nlohmann::ordered_json messages;
  nlohmann::ordered_json tools;
};

/// `offered`: the tools the model may call in this reply (empty: none, e.g. tool_choice "none"; the
/// calls and results already in the conversation are rendered either way). `messages` in the neutral
/// (OpenAI) shape of wire::Request::messages.
TemplateInput template_input(const Format& format, const nlohmann::ordered_json& messages, std::span<const wire::ToolDefinition> offered);

/// The tools as OpenAI's tools array: [{"type": "function", "function": {name, description?, parameters}}].
nlohmann::ordered_json tools_json(std::span<const wire::ToolDefinition> tools);

}  // namespace tern::tool_calls
