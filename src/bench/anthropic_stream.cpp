// Anthropic Messages as a benchmark client speaks it: a streaming POST /v1/messages, and its SSE
// events (message_start carries the prompt side of usage, content_block_delta the text, message_delta
// the output count, message_stop the end).
#include <nlohmann/json.hpp>

#include "bench/openai_stream.h"

namespace tern::bench::detail {

using nlohmann::json;

namespace {

json text_block(const std::string& text) { return {{"type", "text"}, {"text", text}}; }

/// Anthropic's usage: input_tokens counts only the prompt tokens neither read from nor written to the
/// cache, so the whole prompt is the sum of the three.
Usage parse_usage(const json& usage) {
  Usage out;
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

}  // namespace

std::string build_messages_body(std::string_view model, const RequestContent& content, const RequestBodyOptions& options) {
  const json cache_control = options.cache_retention.empty()
                                 ? json()
                                 : json{{"type", "ephemeral"}, {"ttl", options.cache_retention}};
  json body;
  body["model"] = model;
  body["max_tokens"] = options.max_tokens;
  json system = json::array();
  json messages = json::array();
  for (const ChatMessage& message : content.messages) {
    if (message.role == "system") {
      system.push_back(text_block(message.content));
    } else {
      messages.push_back({{"role", message.role}, {"content", json::array({text_block(message.content)})}});
    }
  }
  if (messages.empty() && !content.prompt.empty()) {
    messages.push_back({{"role", "user"}, {"content", json::array({text_block(content.prompt)})}});
  }
  if (!system.empty()) {
    // The shared system prompt is its own breakpoint, so sessions of one agent type share it even
    // where their histories differ.
    if (!cache_control.is_null()) system.back()["cache_control"] = cache_control;
    body["system"] = std::move(system);
  }
  body["messages"] = std::move(messages);
  // Automatic caching (top-level cache_control): a breakpoint after the last message, the whole
  // conversation so far.
  if (!cache_control.is_null()) body["cache_control"] = cache_control;
  body["stream"] = true;
  if (options.ignore_eos) body["ignore_eos"] = true;
  if (options.temperature) body["temperature"] = *options.temperature;
  return body.dump();
}

Result<StreamChunk> parse_messages_event(std::string_view data) {
  StreamChunk chunk;
  json event = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object() || !event.contains("type") || !event["type"].is_string()) {
    return fail("stream event is not a JSON object with a type: '{}'", data.substr(0, 120));
  }
  const std::string& type = event["type"].get_ref<const std::string&>();
  if (type == "message_start") {
    auto message = event.find("message");
    if (message != event.end() && message->is_object()) {
      if (auto usage = message->find("usage"); usage != message->end() && usage->is_object()) chunk.usage = parse_usage(*usage);
    }
  } else if (type == "content_block_delta") {
    auto delta = event.find("delta");
    if (delta != event.end() && delta->is_object()) {
      // Thinking is generated output too, so it counts.
      for (const char* key : {"thinking", "text"}) {
        auto text = delta->find(key);
        if (text != delta->end() && text->is_string()) chunk.text += text->get_ref<const std::string&>();
      }
    }
  } else if (type == "message_delta") {
    if (auto usage = event.find("usage"); usage != event.end() && usage->is_object()) chunk.usage = parse_usage(*usage);
  } else if (type == "message_stop") {
    chunk.is_done = true;
  } else if (type == "error") {
    auto error = event.find("error");
    if (error != event.end() && error->is_object() && error->contains("message") && (*error)["message"].is_string()) {
      chunk.error = (*error)["message"].get<std::string>();
    } else {
      chunk.error = error != event.end() ? error->dump() : std::string("error event without details");
    }
  }
  // ping, content_block_start / _stop and event types added later carry nothing measured here.
  return chunk;
}

}  // namespace tern::bench::detail
