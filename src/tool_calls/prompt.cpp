#include "tool_calls/prompt.h"

#include <string>

#include "tokenizer/template/chat_template.h"

namespace tern::tool_calls {
namespace {

using nlohmann::ordered_json;

/// The tools described for a model whose template has no tool syntax: the Hermes convention, which
/// instruction-tuned models have mostly seen. A template, so each tool prints as Python's json.dumps
/// writes it (the shape models were trained on).
const chat::ChatTemplate& generic_preamble() {
  static const chat::ChatTemplate program = *chat::ChatTemplate::parse(
      "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' -}}"
      "{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}"
      "{%- for tool in tools %}{{- '\\n' + tool | tojson -}}{%- endfor %}"
      "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within '"
      " + '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call>' -}}");
  return program;
}

std::string content_string(const ordered_json& message) {
  const auto it = message.find("content");
  return it != message.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// JSON as Python's json.dumps writes it (", " and ": "), as models saw it in training.
std::string python_json(const ordered_json& value) {
  static const chat::ChatTemplate program = *chat::ChatTemplate::parse("{{- value | tojson -}}");
  auto text = program.render(ordered_json{{"value", value}});
  return text ? *text : value.dump();
}

/// A call's arguments as the template will print them: an object where the text parses as one.
ordered_json arguments_value(const ordered_json& arguments) {
  if (!arguments.is_string()) return arguments;
  ordered_json parsed = ordered_json::parse(arguments.get_ref<const std::string&>(), nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? arguments : parsed;
}

/// A past call in the Hermes syntax, as the model would have written it.
std::string hermes_call(const ordered_json& call) {
  const ordered_json& function = call.contains("function") ? call["function"] : call;
  const ordered_json arguments = arguments_value(function.value("arguments", ordered_json::object()));
  std::string out = "<tool_call>\n{\"name\": \"" + function.value("name", std::string()) + "\", \"arguments\": ";
  out += arguments.is_string() ? arguments.get<std::string>() : python_json(arguments);
  return out + "}\n</tool_call>";
}

ordered_json native_messages(const ordered_json& messages) {
  ordered_json out = messages;
  for (auto& message : out) {
    auto calls = message.find("tool_calls");
    if (calls == message.end()) continue;
    if (!calls->is_array() || calls->empty()) {
      message.erase(calls);  // Llama 3.x templates test `'tool_calls' in message`
      continue;
    }
    for (auto& call : *calls) {
      if (auto function = call.find("function"); function != call.end() && function->contains("arguments")) {
        (*function)["arguments"] = arguments_value((*function)["arguments"]);
      }
    }
  }
  return out;
}

ordered_json generic_messages(const ordered_json& messages, std::span<const wire::ToolDefinition> offered) {
  ordered_json out = ordered_json::array();
  bool follows_tool_result = false;  // the last message out is a user turn of tool results
  for (const auto& message : messages) {
    const std::string role = message.value("role", std::string());
    if (role == "tool") {
      const std::string result = "<tool_response>\n" + content_string(message) + "\n</tool_response>";
      // Results of one round in one user turn: templates that insist on alternating turns take it.
      if (follows_tool_result) {
        out.back()["content"] = out.back()["content"].get<std::string>() + "\n" + result;
      } else {
        out.push_back({{"role", "user"}, {"content", result}});
      }
      follows_tool_result = true;
      continue;
    }
    follows_tool_result = false;
    ordered_json copy = message;
    if (auto calls = copy.find("tool_calls"); calls != copy.end()) {
      std::string text = content_string(copy);
      if (calls->is_array()) {
        for (const auto& call : *calls) {
          if (!text.empty()) text += '\n';
          text += hermes_call(call);
        }
      }
      copy.erase("tool_calls");
      copy["content"] = text;
    }
    out.push_back(std::move(copy));
  }
  if (offered.empty()) return out;
  auto preamble = generic_preamble().render(ordered_json{{"tools", tools_json(offered)}});
  const std::string tools_text = preamble ? *preamble : std::string();
  if (!out.empty() && out[0].value("role", std::string()) == "system") {
    const std::string system = content_string(out[0]);
    out[0]["content"] = system.empty() ? tools_text : system + "\n\n" + tools_text;
  } else {
    out.insert(out.begin(), ordered_json{{"role", "system"}, {"content", tools_text}});
  }
  return out;
}

}  // namespace

ordered_json tools_json(std::span<const wire::ToolDefinition> tools) {
  ordered_json out = ordered_json::array();
  for (const auto& tool : tools) {
    ordered_json function = {{"name", tool.name}};
    if (!tool.description.empty()) function["description"] = tool.description;
    function["parameters"] = ordered_json::parse(tool.parameters.dump());
    out.push_back({{"type", "function"}, {"function", std::move(function)}});
  }
  return out;
}

TemplateInput template_input(const Format& format, const ordered_json& messages, std::span<const wire::ToolDefinition> offered) {
  if (format.is_native) {
    return {.messages = native_messages(messages), .tools = offered.empty() ? ordered_json(nullptr) : tools_json(offered)};
  }
  return {.messages = generic_messages(messages, offered), .tools = nullptr};
}

}  // namespace tern::tool_calls
