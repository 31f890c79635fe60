#include "wire/anthropic/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "wire/json_util.h"

namespace tern::wire {

using json = nlohmann::json;

namespace {

json text_block(std::string text) { return {{"type", "text"}, {"text", std::move(text)}}; }

/// A neutral message's text (content is a string; anything else reads as none).
std::string content_of(const nlohmann::ordered_json& message) {
  auto it = message.find("content");
  return it != message.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json cache_control(int64_t ttl_s) { return {{"type", "ephemeral"}, {"ttl", ttl_s >= 3600 ? "1h" : "5m"}}; }

/// A message's text as blocks, split at its breakpoints (each marks the block that ends there). Never
/// an empty block (Anthropic refuses them): a breakpoint with no text before it in the message is
/// returned unplaced, for the caller to put on a neighbouring block.
struct TextBlocks {
  json blocks = json::array();
  std::optional<int64_t> unplaced_ttl_s;
};

TextBlocks blocks_of(const std::string& text, std::vector<std::pair<size_t, int64_t>> cuts) {
  std::sort(cuts.begin(), cuts.end());
  TextBlocks out;
  size_t start = 0;
  for (const auto& [at, ttl_s] : cuts) {
    const size_t end = std::min(at, text.size());
    if (end > start) {
      out.blocks.push_back(text_block(text.substr(start, end - start)));
      start = end;
    }
    if (out.blocks.empty()) {
      out.unplaced_ttl_s = std::max(out.unplaced_ttl_s.value_or(0), ttl_s);
    } else {
      out.blocks.back()["cache_control"] = cache_control(ttl_s);
    }
  }
  if (start < text.size()) out.blocks.push_back(text_block(text.substr(start)));
  return out;
}

}  // namespace

std::expected<json, ApiError> anthropic_request_body(const Request& r, std::string_view model, int64_t default_max_tokens) {
  if (r.kind != RequestKind::kChat) return std::unexpected(bad_request("an Anthropic endpoint has no text completions"));
  if (r.wants_json()) {
    return std::unexpected(bad_request("response_format: an Anthropic endpoint takes no response_format (ask for JSON in the prompt, or "
                                       "force a tool whose input_schema is the schema)", "response_format"));
  }
  json body = {{"model", model}, {"max_tokens", r.max_tokens.value_or(default_max_tokens)}};
  const int last = static_cast<int>(r.messages.size()) - 1;
  // Breakpoints by message; one at the end of the whole conversation (or over the whole prompt) is
  // Anthropic's top-level form.
  std::vector<std::vector<std::pair<size_t, int64_t>>> cuts(r.messages.size());
  std::optional<int64_t> top_level_ttl;
  for (const CacheBreakpoint& b : r.cache_breakpoints) {
    const bool at_end = b.message < 0 || (b.message == last && b.chars >= content_of(r.messages[static_cast<size_t>(last)]).size());
    if (at_end) {
      top_level_ttl = std::max(top_level_ttl.value_or(0), b.ttl_s);
    } else if (b.message <= last) {
      cuts[static_cast<size_t>(b.message)].emplace_back(b.chars, b.ttl_s);
    }
  }
  json system = json::array();
  json messages = json::array();
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const auto& m = r.messages[i];
    const std::string role = m.value("role", "user");
    TextBlocks text = blocks_of(content_of(m), cuts[i]);
    json blocks = std::move(text.blocks);
    // A breakpoint before any of this message's text marks the block before it (the end of the
    // previous message), a tool result's the result itself.
    if (text.unplaced_ttl_s && role != "tool") {
      json* previous = !messages.empty() && !messages.back()["content"].empty() ? &messages.back()["content"].back()
                       : !system.empty()                                         ? &system.back()
                                                                                 : nullptr;
      if (previous != nullptr) (*previous)["cache_control"] = cache_control(*text.unplaced_ttl_s);
    }
    if (role == "system") {
      for (auto& block : blocks) system.push_back(std::move(block));
      continue;
    }
    if (role == "assistant") {
      if (auto calls = m.find("tool_calls"); calls != m.end() && calls->is_array()) {
        for (const auto& call : *calls) {
          const std::string arguments = call["function"].value("arguments", "");
          json input = json::parse(arguments.empty() ? std::string("{}") : arguments, nullptr, false);
          blocks.push_back({{"type", "tool_use"}, {"id", call.value("id", "")}, {"name", call["function"].value("name", "")},
                            {"input", input.is_object() ? input : json::object()}});
        }
      }
    } else if (role == "tool") {
      json result = {{"type", "tool_result"}, {"tool_use_id", m.value("tool_call_id", "")}};
      if (!blocks.empty()) result["content"] = std::move(blocks);  // a tool that printed nothing: no content
      if (m.value("is_error", false)) result["is_error"] = true;
      if (text.unplaced_ttl_s) result["cache_control"] = cache_control(*text.unplaced_ttl_s);
      blocks = json::array({std::move(result)});
    }
    if (blocks.empty()) continue;  // nothing to say (an empty turn): Anthropic refuses empty content
    const std::string mapped = role == "assistant" ? "assistant" : "user";  // tool results go in user turns
    // Anthropic wants alternating turns: consecutive ones of the same role become one.
    if (!messages.empty() && messages.back()["role"] == mapped) {
      for (auto& block : blocks) messages.back()["content"].push_back(std::move(block));
    } else {
      messages.push_back({{"role", mapped}, {"content", std::move(blocks)}});
    }
  }
  if (messages.empty()) return std::unexpected(bad_request("the request has no user or assistant message", "messages"));
  if (!system.empty()) body["system"] = std::move(system);
  body["messages"] = std::move(messages);
  if (top_level_ttl) body["cache_control"] = cache_control(*top_level_ttl);
  body["stream"] = true;
  const Sampling& s = r.sampling;
  if (s.temperature != 1.0f) body["temperature"] = std::min(s.temperature, 1.0f);  // Anthropic's range is [0, 1]
  if (s.top_p != 1.0f) body["top_p"] = s.top_p;
  if (s.top_k > 0) body["top_k"] = s.top_k;
  if (!r.stop.empty()) body["stop_sequences"] = r.stop;
  if (r.ignore_eos) body["ignore_eos"] = true;  // tern's extension (as on its OpenAI endpoints)
  if (!r.tools.empty()) {
    json tools = json::array();
    for (const ToolDefinition& t : r.tools) {
      json tool = {{"name", t.name}, {"input_schema", t.parameters}};
      if (!t.description.empty()) tool["description"] = t.description;
      if (t.strict) tool["strict"] = true;
      tools.push_back(std::move(tool));
    }
    body["tools"] = std::move(tools);
    json choice;
    switch (r.tool_choice.mode) {
      case ToolChoice::Mode::kAuto: choice = {{"type", "auto"}}; break;
      case ToolChoice::Mode::kNone: choice = {{"type", "none"}}; break;
      case ToolChoice::Mode::kRequired: choice = {{"type", "any"}}; break;
      case ToolChoice::Mode::kNamed: choice = {{"type", "tool"}, {"name", r.tool_choice.name}}; break;
    }
    if (!r.tool_choice.parallel && r.tool_choice.mode != ToolChoice::Mode::kNone) choice["disable_parallel_tool_use"] = true;
    if (r.tool_choice.mode != ToolChoice::Mode::kAuto || !r.tool_choice.parallel) body["tool_choice"] = std::move(choice);
  }
  return body;
}

UsageReport anthropic_usage_report(const json& usage) {
  UsageReport out;
  const int64_t input = int_or(usage, "input_tokens", -1);
  const int64_t read = int_or(usage, "cache_read_input_tokens", -1);
  const int64_t written = int_or(usage, "cache_creation_input_tokens", -1);
  if (input >= 0) out.prompt_tokens = input + std::max<int64_t>(read, 0) + std::max<int64_t>(written, 0);
  if (read >= 0) out.cached_tokens = read;
  if (written >= 0) out.cache_write_tokens = written;
  if (auto creation = usage.find("cache_creation"); creation != usage.end() && creation->is_object()) {
    out.cache_write_1h_tokens = int_or(*creation, "ephemeral_1h_input_tokens", -1);
  }
  out.completion_tokens = int_or(usage, "output_tokens", -1);
  return out;
}

Result<StreamDelta> parse_anthropic_stream_event(std::string_view data) {
  StreamDelta out;
  const json event = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object() || !event.contains("type") || !event["type"].is_string()) {
    return fail("stream event is not a JSON object with a type: '{}'", data.substr(0, 120));
  }
  const std::string& type = event["type"].get_ref<const std::string&>();
  if (type == "message_start") {
    if (auto message = event.find("message"); message != event.end() && message->is_object()) {
      if (auto usage = message->find("usage"); usage != message->end() && usage->is_object()) out.usage = anthropic_usage_report(*usage);
    }
  } else if (type == "content_block_start") {
    // A tool_use block opens a tool call (its index is the block's: AnthropicStreamReader numbers the calls).
    if (auto block = event.find("content_block"); block != event.end() && block->is_object() && string_or(*block, "type", "") == "tool_use") {
      out.tool_calls.push_back({.index = static_cast<int>(int_or(event, "index", 0)), .id = string_or(*block, "id", ""),
                                .name = string_or(*block, "name", ""), .arguments = {}});
    }
  } else if (type == "content_block_delta") {
    if (auto delta = event.find("delta"); delta != event.end() && delta->is_object()) {
      out.text = string_or(*delta, "text", "");
      out.reasoning = string_or(*delta, "thinking", "");
      if (string_or(*delta, "type", "") == "input_json_delta") {
        out.tool_calls.push_back({.index = static_cast<int>(int_or(event, "index", 0)), .id = {}, .name = {},
                                  .arguments = string_or(*delta, "partial_json", "")});
      }
    }
  } else if (type == "message_delta") {
    if (auto delta = event.find("delta"); delta != event.end() && delta->is_object()) {
      const std::string stop = string_or(*delta, "stop_reason", "");
      out.finish_reason = stop == "max_tokens" ? "length" : stop == "tool_use" ? "tool_calls" : stop.empty() ? "" : "stop";
      if (stop == "stop_sequence") out.stop_sequence = string_or(*delta, "stop_sequence", "");
    }
    if (auto usage = event.find("usage"); usage != event.end() && usage->is_object()) out.usage = anthropic_usage_report(*usage);
  } else if (type == "message_stop") {
    out.is_end = true;
  } else if (type == "error") {
    StreamDelta::Error error;
    if (auto e = event.find("error"); e != event.end() && e->is_object()) {
      error.type = string_or(*e, "type", "");
      error.message = string_or(*e, "message", e->dump());
    } else {
      error.message = "error event without details";
    }
    out.error = std::move(error);
  }
  return out;
}

Result<StreamDelta> AnthropicStreamReader::read(std::string_view data) {
  auto delta = parse_anthropic_stream_event(data);
  if (!delta) return delta;
  for (ToolCallDelta& call : delta->tool_calls) {
    // Calls are numbered in the order their blocks open; a piece for a block never opened is dropped.
    auto it = call_of_block_.find(call.index);
    if (it == call_of_block_.end()) {
      if (call.id.empty() && call.name.empty()) {
        call.index = -1;
        continue;
      }
      it = call_of_block_.emplace(call.index, static_cast<int>(call_of_block_.size())).first;
    }
    call.index = it->second;
  }
  std::erase_if(delta->tool_calls, [](const ToolCallDelta& call) { return call.index < 0; });
  return delta;
}

}  // namespace tern::wire
