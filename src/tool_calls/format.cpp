#include "tool_calls/format.h"

namespace tern::tool_calls {
namespace {

Format hermes(bool is_native) {
  return {.family = is_native ? Family::kHermes : Family::kGeneric,
          .is_native = is_native,
          .trigger = "<tool_call>",
          .call_prefix = "<tool_call>\n{\"name\": \"",
          .arguments_prefix = "\", \"arguments\": ",
          .call_suffix = "}\n</tool_call>",
          .allows_parallel = true};
}

}  // namespace

Format detect_format(std::string_view source) {
  const bool reads_tools = source.find("tools") != std::string_view::npos;
  if (reads_tools && source.find("<tool_call>") != std::string_view::npos) return hermes(true);
  // Llama 3.x: tools as JSON in the first user (or system) message, a call as one JSON object with
  // "parameters", tool results in the ipython role.
  if (reads_tools && source.find("\"parameters\"") != std::string_view::npos && source.find("<|start_header_id|>") != std::string_view::npos) {
    return {.family = Family::kLlama3,
            .is_native = true,
            .trigger = "{\"name\": ",
            .call_prefix = "{\"name\": \"",
            .arguments_prefix = "\", \"parameters\": ",
            .call_suffix = "}",
            .allows_parallel = false};
  }
  return hermes(false);
}

const char* family_name(Family family) {
  switch (family) {
    case Family::kHermes: return "hermes";
    case Family::kLlama3: return "llama3";
    case Family::kGeneric: return "generic";
  }
  return "generic";
}

}  // namespace tern::tool_calls
