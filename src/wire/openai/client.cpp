#include "wire/openai/client.h"

#include <fmt/format.h>

#include "wire/json_util.h"

namespace tern::wire {

using json = nlohmann::json;

nlohmann::ordered_json openai_request_body(const Request& r, std::string_view model) {
  using json = nlohmann::ordered_json;
  json body = {{"model", model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (r.kind == RequestKind::kChat) {
    body["messages"] = r.messages;
    // Anthropic's is_error on a tool result has no OpenAI field: strict upstreams refuse unknown ones.
    for (auto& message : body["messages"]) message.erase("is_error");
  } else {
    body["prompt"] = r.prompt ? json(*r.prompt) : json(r.prompt_tokens);
  }
  if (r.max_tokens) body["max_tokens"] = *r.max_tokens;
  const Sampling& s = r.sampling;
  const Sampling defaults;
  if (s.temperature != defaults.temperature) body["temperature"] = s.temperature;
  if (s.top_p != defaults.top_p) body["top_p"] = s.top_p;
  if (s.presence_penalty != 0) body["presence_penalty"] = s.presence_penalty;
  if (s.frequency_penalty != 0) body["frequency_penalty"] = s.frequency_penalty;
  // Not in OpenAI's schema, but understood by vLLM, SGLang, llama-server and tern: sent only when set.
  if (s.top_k > 0) body["top_k"] = s.top_k;
  if (s.min_p > 0) body["min_p"] = s.min_p;
  if (s.repetition_penalty != 1.0f) body["repetition_penalty"] = s.repetition_penalty;
  if (r.ignore_eos) body["ignore_eos"] = true;
  if (r.seed_given) body["seed"] = s.seed;
  if (!r.stop.empty()) body["stop"] = r.stop;
  // OpenAI retains only whole prompts: a breakpoint over the whole prompt kept a day or more.
  for (const CacheBreakpoint& b : r.cache_breakpoints) {
    if (b.message < 0 && b.ttl_s >= 24 * 3600) body["prompt_cache_retention"] = "24h";
  }
  if (!r.prompt_cache_key.empty()) body["prompt_cache_key"] = r.prompt_cache_key;
  if (!r.tools.empty()) {
    json tools = json::array();
    for (const ToolDefinition& t : r.tools) {
      json function = {{"name", t.name}, {"parameters", t.parameters}};
      if (!t.description.empty()) function["description"] = t.description;
      if (t.strict) function["strict"] = true;
      tools.push_back({{"type", "function"}, {"function", std::move(function)}});
    }
    body["tools"] = std::move(tools);
  }
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kAuto: break;  // the default
    case ToolChoice::Mode::kNone: if (!r.tools.empty()) body["tool_choice"] = "none"; break;
    case ToolChoice::Mode::kRequired: body["tool_choice"] = "required"; break;
    case ToolChoice::Mode::kNamed: body["tool_choice"] = {{"type", "function"}, {"function", {{"name", r.tool_choice.name}}}}; break;
  }
  if (!r.tool_choice.parallel && !r.tools.empty()) body["parallel_tool_calls"] = false;
  const ResponseFormat& f = r.response_format;
  if (f.kind == ResponseFormat::Kind::kJsonObject) {
    body["response_format"] = {{"type", "json_object"}};
  } else if (f.kind == ResponseFormat::Kind::kJsonSchema) {
    json spec = {{"name", f.name}};
    if (!f.description.empty()) spec["description"] = f.description;
    if (!f.schema.is_null()) spec["schema"] = f.schema;
    if (f.strict) spec["strict"] = true;
    body["response_format"] = {{"type", "json_schema"}, {"json_schema", std::move(spec)}};
  }
  return body;
}

UsageReport openai_usage_report(const json& usage) {
  UsageReport out;
  out.prompt_tokens = int_or(usage, "prompt_tokens", -1);
  out.completion_tokens = int_or(usage, "completion_tokens", -1);
  if (auto details = usage.find("prompt_tokens_details"); details != usage.end() && details->is_object()) {
    out.cached_tokens = int_or(*details, "cached_tokens", -1);
    out.cache_write_tokens = int_or(*details, "cache_write_tokens", -1);
  }
  if (out.cached_tokens < 0) out.cached_tokens = int_or(usage, "cache_read_input_tokens", -1);
  if (out.cache_write_tokens < 0) out.cache_write_tokens = int_or(usage, "cache_creation_input_tokens", -1);
  return out;
}

Result<StreamDelta> parse_openai_stream_chunk(std::string_view data) {
  StreamDelta out;
  if (data == "[DONE]") {
    out.is_end = true;
    return out;
  }
  const json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return fail("stream chunk is not a JSON object: '{}'", data.substr(0, 120));
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    StreamDelta::Error error;
    if (e->is_object()) {
      error.type = string_or(*e, "type", "");
      error.message = string_or(*e, "message", e->dump());
    } else {
      error.message = e->dump();
    }
    out.error = std::move(error);
    return out;
  }
  // One choice is asked for (n = 1); a server that sends more is read by its first.
  if (auto choices = j.find("choices"); choices != j.end() && choices->is_array() && !choices->empty() && (*choices)[0].is_object()) {
    const json& choice = (*choices)[0];
    if (auto delta = choice.find("delta"); delta != choice.end() && delta->is_object()) {
      out.text = string_or(*delta, "content", "");
      // Reasoning models stream their thinking apart (vLLM: reasoning_content; OpenRouter: reasoning).
      out.reasoning = string_or(*delta, "reasoning_content", "") + string_or(*delta, "reasoning", "");
      if (auto calls = delta->find("tool_calls"); calls != delta->end() && calls->is_array()) {
        for (const json& call : *calls) {
          if (!call.is_object()) continue;
          ToolCallDelta piece{.index = static_cast<int>(int_or(call, "index", 0)), .id = string_or(call, "id", ""), .name = {}, .arguments = {}};
          if (auto function = call.find("function"); function != call.end() && function->is_object()) {
            piece.name = string_or(*function, "name", "");
            piece.arguments = string_or(*function, "arguments", "");
          }
          out.tool_calls.push_back(std::move(piece));
        }
      }
    } else {
      out.text = string_or(choice, "text", "");
    }
    out.finish_reason = string_or(choice, "finish_reason", "");
  }
  if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) out.usage = openai_usage_report(*usage);
  return out;
}

}  // namespace tern::wire
