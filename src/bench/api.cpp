#include "bench/api.h"

#include <nlohmann/json.hpp>

#include "wire/anthropic/client.h"
#include "wire/openai/client.h"

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

std::string build_request_body(ApiKind kind, std::string_view model, const RequestContent& content,
                               const RequestBodyOptions& options) {
  wire::Request request;
  request.kind = kind == ApiKind::kCompletions ? wire::RequestKind::kCompletion : wire::RequestKind::kChat;
  request.messages = nlohmann::ordered_json::array();
  for (const ChatMessage& message : content.messages) request.messages.push_back({{"role", message.role}, {"content", message.content}});
  if (kind == ApiKind::kCompletions) {
    request.prompt = content.prompt;
  } else if (request.messages.empty()) {
    request.messages.push_back({{"role", "user"}, {"content", content.prompt}});  // a completions workload on a chat API
  }
  request.max_tokens = options.max_tokens;
  request.ignore_eos = options.ignore_eos;
  if (options.temperature) request.sampling.temperature = static_cast<float>(*options.temperature);
  request.prompt_cache_key = options.prompt_cache_key;
  if (kind == ApiKind::kMessages) {
    if (!options.cache_retention.empty()) {
      const int64_t ttl_s = options.cache_retention == "1h" ? 3600 : 300;
      // The shared system prompt is its own breakpoint, so sessions of one agent type share it even
      // where their histories differ; and the whole conversation so far.
      for (size_t i = 0; i < request.messages.size(); ++i) {
        if (request.messages[i]["role"] == "system") {
          const auto& text = request.messages[i]["content"].get_ref<const std::string&>();
          if (i + 1 == request.messages.size() || request.messages[i + 1]["role"] != "system") {
            request.cache_breakpoints.push_back({.message = static_cast<int>(i), .chars = text.size(), .ttl_s = ttl_s});
          }
        }
      }
      request.cache_breakpoints.push_back({.message = -1, .chars = 0, .ttl_s = ttl_s});
    }
    auto body = wire::anthropic_request_body(request, model, options.max_tokens);
    return body ? body->dump() : std::string("{}");  // a chat request always has a turn
  }
  if (options.cache_retention == "24h") request.cache_breakpoints.push_back({.message = -1, .chars = 0, .ttl_s = 24 * 3600});
  return wire::openai_request_body(request, model).dump();
}

Result<wire::StreamDelta> parse_stream_chunk(std::string_view data, ApiKind kind) {
  return kind == ApiKind::kMessages ? wire::parse_anthropic_stream_event(data) : wire::parse_openai_stream_chunk(data);
}

}  // namespace tern::bench
