#include "tool_calls/grammar_spec.h"

#include <nlohmann/json.hpp>

namespace tern::tool_calls {
namespace {

using nlohmann::ordered_json;

// Whitespace the arguments may hold between JSON tokens, per gap: enough for any layout a model
// writes on one line, never a run a small model could loop in.
constexpr int kMaxWhitespace = 1;

ordered_json tag(const Format& format, const wire::ToolDefinition& tool) {
  return {{"type", "tag"},
          {"begin", format.call_prefix + tool.name + format.arguments_prefix},
          {"content", {{"type", "json_schema"}, {"json_schema", tool.parameters}, {"max_whitespace_cnt", kMaxWhitespace}}},
          {"end", format.call_suffix}};
}

}  // namespace

std::string structural_tag(const Format& format, std::span<const wire::ToolDefinition> tools, const wire::ToolChoice& choice) {
  using Mode = wire::ToolChoice::Mode;
  const bool one_call = !choice.parallel || !format.allows_parallel;
  ordered_json shape;
  if (choice.mode == Mode::kNamed) {
    for (const auto& tool : tools) {
      if (tool.name == choice.name) shape = tag(format, tool);
    }
  } else {
    ordered_json tags = ordered_json::array();
    for (const auto& tool : tools) tags.push_back(tag(format, tool));
    if (choice.mode == Mode::kRequired) {
      shape = {{"type", "tags_with_separator"}, {"tags", std::move(tags)}, {"separator", "\n"}, {"at_least_one", true},
               {"stop_after_first", one_call}};
    } else {
      shape = {{"type", "triggered_tags"}, {"triggers", {format.trigger}}, {"tags", std::move(tags)}, {"at_least_one", false},
               {"stop_after_first", one_call}};
    }
  }
  return ordered_json{{"type", "structural_tag"}, {"format", std::move(shape)}}.dump();
}

}  // namespace tern::tool_calls
