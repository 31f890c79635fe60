#include "bench/openai_stream.h"

#include <nlohmann/json.hpp>

namespace tern::bench {

using nlohmann::json;

Result<ApiKind> parse_api_kind(std::string_view name) {
  if (name == "chat") return ApiKind::kChat;
  if (name == "completions") return ApiKind::kCompletions;
  if (name == "messages") return ApiKind::kMessages;
  return fail("unknown api '{}': expected 'chat', 'completions' or 'messages'", name);
}

std::string_view api_kind_name(ApiKind kind) {
  switch (kind) {
    case ApiKind::kChat: return "chat";
    case ApiKind::kCompletions: return "completions";
    case ApiKind::kMessages: return "messages";
  }
  return "chat";
}

std::string_view api_path(ApiKind kind) {
  switch (kind) {
    case ApiKind::kChat: return "/chat/completions";
    case ApiKind::kCompletions: return "/completions";
    case ApiKind::kMessages: return "/messages";
  }
  return "/chat/completions";
}

Result<void> check_cache_retention(ApiKind kind, std::string_view retention) {
  if (retention.empty()) return {};
  if (kind == ApiKind::kMessages) {
    if (retention == "5m" || retention == "1h") return {};
    return fail("cache_retention '{}': the messages api takes cache_control TTLs \"5m\" or \"1h\"", retention);
  }
  if (retention == "24h" || retention == "in_memory") return {};
  return fail("cache_retention '{}': the {} api takes prompt_cache_retention \"24h\" or \"in_memory\"", retention,
              api_kind_name(kind));
}

bool is_long_retention(std::string_view retention) { return retention == "1h" || retention == "24h"; }

void Usage::merge(const Usage& later) {
  for (auto [into, from] : {std::pair{&prompt_tokens, later.prompt_tokens}, {&completion_tokens, later.completion_tokens},
                            {&cached_tokens, later.cached_tokens}, {&cache_write_tokens, later.cache_write_tokens},
                            {&cache_write_1h_tokens, later.cache_write_1h_tokens}}) {
    if (from >= 0) *into = from;
  }
}

std::string build_request_body(ApiKind kind, std::string_view model, const RequestContent& content,
                               const RequestBodyOptions& options) {
  if (kind == ApiKind::kMessages) return detail::build_messages_body(model, content, options);
  json body;
  body["model"] = model;
  if (kind == ApiKind::kChat) {
    json messages = json::array();
    for (const ChatMessage& message : content.messages) {
      messages.push_back({{"role", message.role}, {"content", message.content}});
    }
    body["messages"] = std::move(messages);
  } else {
    body["prompt"] = content.prompt;
  }
  body["max_tokens"] = options.max_tokens;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  if (options.ignore_eos) body["ignore_eos"] = true;
  if (options.temperature) body["temperature"] = *options.temperature;
  if (!options.cache_retention.empty()) body["prompt_cache_retention"] = options.cache_retention;
  if (!options.prompt_cache_key.empty()) body["prompt_cache_key"] = options.prompt_cache_key;
  return body.dump();
}

int64_t detail::int_or(const json& object, const char* key, int64_t fallback) {
  auto found = object.find(key);
  if (found == object.end() || !found->is_number_integer()) return fallback;
  return found->get<int64_t>();
}

namespace {

using detail::int_or;

Usage parse_usage(const json& usage) {
  Usage out;
  out.prompt_tokens = int_or(usage, "prompt_tokens", -1);
  out.completion_tokens = int_or(usage, "completion_tokens", -1);
  auto details = usage.find("prompt_tokens_details");
  if (details != usage.end() && details->is_object()) {
    out.cached_tokens = int_or(*details, "cached_tokens", -1);
    out.cache_write_tokens = int_or(*details, "cache_write_tokens", -1);
  }
  // Anthropic-style field names, which some gateways pass through unchanged.
  if (out.cached_tokens < 0) out.cached_tokens = int_or(usage, "cache_read_input_tokens", -1);
  if (out.cache_write_tokens < 0) out.cache_write_tokens = int_or(usage, "cache_creation_input_tokens", -1);
  return out;
}

}  // namespace

Result<StreamChunk> parse_stream_chunk(std::string_view data, ApiKind kind) {
  if (kind == ApiKind::kMessages) return detail::parse_messages_event(data);
  StreamChunk chunk;
  if (data == "[DONE]") {
    chunk.is_done = true;
    return chunk;
  }
  json parsed = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return fail("stream chunk is not a JSON object: '{}'", data.substr(0, 120));
  }
  if (auto error = parsed.find("error"); error != parsed.end()) {
    if (error->is_object() && error->contains("message") && (*error)["message"].is_string()) {
      chunk.error = (*error)["message"].get<std::string>();
    } else {
      chunk.error = error->dump();
    }
    return chunk;
  }
  if (auto choices = parsed.find("choices"); choices != parsed.end() && choices->is_array()) {
    for (const json& choice : *choices) {
      if (kind == ApiKind::kChat) {
        auto delta = choice.find("delta");
        if (delta == choice.end() || !delta->is_object()) continue;
        // Reasoning models stream their thinking first; it is generated output, so it counts.
        for (const char* key : {"reasoning_content", "reasoning", "content"}) {
          auto text = delta->find(key);
          if (text != delta->end() && text->is_string()) chunk.text += text->get_ref<const std::string&>();
        }
      } else {
        auto text = choice.find("text");
        if (text != choice.end() && text->is_string()) chunk.text += text->get_ref<const std::string&>();
      }
    }
  }
  if (auto usage = parsed.find("usage"); usage != parsed.end() && usage->is_object()) {
    chunk.usage = parse_usage(*usage);
  }
  return chunk;
}

}  // namespace tern::bench
