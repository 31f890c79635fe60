#include "wire/anthropic/messages.h"
#include "wire/json_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <random>
#include <set>

namespace tern::wire {
namespace {

using json = nlohmann::json;
using Error = std::unexpected<ApiError>;


/// A block's `cache_control` ({"type": "ephemeral", "ttl": "5m" | "1h"}): its TTL in seconds.
std::expected<int64_t, ApiError> cache_ttl(const json& control, const std::string& param) {
  if (!control.is_object()) return Error(bad_request(fmt::format("{}: must be an object", param), param));
  for (const auto& [key, value] : control.items()) {
    if (key != "type" && key != "ttl") return Error(bad_request(fmt::format("{}.{}: Extra inputs are not permitted", param, key), param + "." + key));
  }
  const json* type = field(control, "type");
  if (type == nullptr || *type != "ephemeral") {
    return Error(bad_request(fmt::format("{}.type: Input should be 'ephemeral'", param), param + ".type"));
  }
  const json* ttl = field(control, "ttl");
  if (ttl == nullptr || *ttl == "5m") return 300;
  if (*ttl == "1h") return 3600;
  return Error(bad_request(fmt::format("{}.ttl: Input should be '5m' or '1h'", param), param + ".ttl"));
}

/// Text of a `content` (a string, or an array of blocks of which only text is supported). A block
/// with cache_control adds a breakpoint after its text to `breakpoints` (message index `message`).
std::expected<std::string, ApiError> content_text(const json& content, const std::string& param, int message,
                                                  std::vector<CacheBreakpoint>& breakpoints) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Error(bad_request(fmt::format("{}: must be a string or an array of content blocks", param), param));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& block = content[i];
    const std::string where = fmt::format("{}.{}", param, i);
    if (!block.is_object() || !block.contains("type") || !block["type"].is_string()) {
      return Error(bad_request(fmt::format("{}: a content block must be an object with a 'type'", where), where));
    }
    const std::string type = block["type"].get<std::string>();
    if (type != "text") {
      return Error(bad_request(fmt::format("{}: content block type '{}' is not supported (only text)", where, type), where + ".type"));
    }
    if (!block.contains("text") || !block["text"].is_string()) {
      return Error(bad_request(fmt::format("{}.text: Field required (a string)", where), where + ".text"));
    }
    text += block["text"].get<std::string>();
    if (const json* control = field(block, "cache_control"); control != nullptr && !control->is_null()) {
      auto ttl = cache_ttl(*control, where + ".cache_control");
      if (!ttl) return Error(ttl.error());
      breakpoints.push_back({.message = message, .chars = text.size(), .ttl_s = *ttl});
    }
  }
  return text;
}

std::string random_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("msg_{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
}

}  // namespace

std::expected<Request, ApiError> parse_anthropic_request(std::string_view text) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {
    return Error(bad_request(fmt::format("the request body is not valid JSON: {}", e.what())));
  }
  if (!body.is_object()) return Error(bad_request("the request body must be a JSON object"));
  // Today's API (and SDK) fields, and the sampling fields older clients still send. Fields that only
  // steer Anthropic's own fleet (service_tier, inference_geo, speed, ...) are accepted and have no effect.
  // ignore_eos is tern's (as on its OpenAI endpoints): generate exactly max_tokens, for benchmarks.
  static const std::set<std::string> known = {"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p",
                                              "top_k", "stream", "metadata", "tools", "tool_choice", "thinking", "service_tier",
                                              "cache_control", "container", "diagnostics", "inference_geo", "output_config", "speed",
                                              "user_profile_id", "workspace_id", "models", "fallbacks", "provider", "ignore_eos"};
  for (const auto& [key, value] : body.items()) {
    if (!known.contains(key)) return Error(bad_request(fmt::format("{}: Extra inputs are not permitted", key), key));
  }
  for (const char* name : {"tools", "thinking"}) {
    if (const json* v = field(body, name); v != nullptr && !(v->is_array() && v->empty())) {
      return Error(bad_request(fmt::format("{}: not supported by tern yet", name), name));
    }
  }
  if (const json* v = field(body, "tool_choice"); v != nullptr) return Error(bad_request("tool_choice: not supported by tern yet", "tool_choice"));
  for (const char* name : {"container", "output_config"}) {
    if (const json* v = field(body, name); v != nullptr && !(v->is_object() && v->empty())) {
      return Error(bad_request(fmt::format("{}: not supported by tern yet", name), name));
    }
  }

  Request out;
  out.kind = RequestKind::kChat;
  // The model, then OpenRouter's fallback forms: `models` (as on its OpenAI endpoints; alone, its first
  // entry is the primary) or `fallbacks` ([{"model": ...}], at most 3, as OpenRouter's Messages endpoint
  // takes them) — not both.
  const json* model = field(body, "model");
  if (model != nullptr && (!model->is_string() || model->get<std::string>().empty())) {
    return Error(bad_request("model: Input should be a non-empty string", "model"));
  }
  std::vector<std::string> fallbacks;
  const json* models = field(body, "models");
  const json* fallback_list = field(body, "fallbacks");
  if (models != nullptr && fallback_list != nullptr) return Error(bad_request("fallbacks: cannot be combined with models", "fallbacks"));
  if (models != nullptr) {
    if (!models->is_array() || models->size() > 32) return Error(bad_request("models: must be an array of at most 32 strings", "models"));
    for (const json& m : *models) {
      if (!m.is_string() || m.get<std::string>().empty()) return Error(bad_request("models: must be an array of non-empty strings", "models"));
      fallbacks.push_back(m.get<std::string>());
    }
  }
  if (fallback_list != nullptr) {
    if (!fallback_list->is_array() || fallback_list->size() > 3) return Error(bad_request("fallbacks: must be an array of at most 3 entries", "fallbacks"));
    for (size_t i = 0; i < fallback_list->size(); ++i) {
      const json& f = (*fallback_list)[i];
      const std::string where = fmt::format("fallbacks.{}", i);
      if (!f.is_object()) return Error(bad_request(fmt::format("{}: must be an object with a 'model'", where), where));
      for (const auto& [key, value] : f.items()) {
        if (key != "model") return Error(bad_request(fmt::format("{}.{}: only 'model' may be given per fallback", where, key), where + "." + key));
      }
      const json* name = field(f, "model");
      if (name == nullptr || !name->is_string() || name->get<std::string>().empty()) {
        return Error(bad_request(fmt::format("{}.model: Field required (a non-empty string)", where), where + ".model"));
      }
      fallbacks.push_back(name->get<std::string>());
    }
  }
  if (model != nullptr) {
    out.model = model->get<std::string>();
  } else if (models != nullptr && !fallbacks.empty()) {
    out.model = fallbacks.front();
  } else {
    return Error(bad_request("model: Field required (a non-empty string)", "model"));
  }
  for (auto& name : fallbacks) {
    if (name != out.model && std::find(out.fallback_models.begin(), out.fallback_models.end(), name) == out.fallback_models.end()) {
      out.fallback_models.push_back(std::move(name));
    }
  }

  const json* max_tokens = field(body, "max_tokens");
  if (max_tokens == nullptr) return Error(bad_request("max_tokens: Field required", "max_tokens"));
  if (!max_tokens->is_number_integer() || max_tokens->get<int64_t>() < 1 || max_tokens->get<int64_t>() > (int64_t{1} << 30)) {
    return Error(bad_request("max_tokens: must be an integer of at least 1", "max_tokens"));
  }
  out.max_tokens = max_tokens->get<int64_t>();

  out.messages = nlohmann::ordered_json::array();
  if (const json* system = field(body, "system"); system != nullptr) {
    std::vector<CacheBreakpoint> system_breakpoints;
    auto text_or = content_text(*system, "system", 0, system_breakpoints);
    if (!text_or) return Error(text_or.error());
    if (!text_or->empty()) {
      out.messages.push_back({{"role", "system"}, {"content", *text_or}});
      out.cache_breakpoints = std::move(system_breakpoints);
    }
  }
  const json* messages = field(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return Error(bad_request("messages: Field required (a non-empty array)", "messages"));
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string param = fmt::format("messages.{}", i);
    if (!m.is_object()) return Error(bad_request(fmt::format("{}: must be an object", param), param));
    const json* role = field(m, "role");
    if (role == nullptr || !role->is_string() || (*role != "user" && *role != "assistant")) {
      return Error(bad_request(fmt::format("{}.role: Input should be 'user' or 'assistant'", param), param + ".role"));
    }
    const json* content = field(m, "content");
    if (content == nullptr) return Error(bad_request(fmt::format("{}.content: Field required", param), param + ".content"));
    auto text_or = content_text(*content, param + ".content", static_cast<int>(out.messages.size()), out.cache_breakpoints);
    if (!text_or) return Error(text_or.error());
    out.messages.push_back({{"role", role->get<std::string>()}, {"content", *text_or}});
  }
  // Top-level cache_control (automatic caching): a breakpoint after the last message.
  if (const json* control = field(body, "cache_control"); control != nullptr && !control->is_null()) {
    auto ttl = cache_ttl(*control, "cache_control");
    if (!ttl) return Error(ttl.error());
    const int last = static_cast<int>(out.messages.size()) - 1;
    out.cache_breakpoints.push_back({.message = last, .chars = out.messages[static_cast<size_t>(last)]["content"].get_ref<const std::string&>().size(),
                                     .ttl_s = *ttl});
  }
  if (static_cast<int>(out.cache_breakpoints.size()) > kMaxCacheBreakpoints) {
    return Error(bad_request(fmt::format("A maximum of {} blocks with cache_control may be provided. Found {}.", kMaxCacheBreakpoints,
                                         out.cache_breakpoints.size())));
  }

  auto number = [&](const char* name, double lo, double hi) -> std::expected<std::optional<double>, ApiError> {
    const json* v = field(body, name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number() || !(v->get<double>() >= lo && v->get<double>() <= hi)) {
      return Error(bad_request(fmt::format("{}: must be a number in [{}, {}]", name, lo, hi), name));
    }
    return v->get<double>();
  };
  auto temperature = number("temperature", 0.0, 1.0);
  auto top_p = number("top_p", 0.0, 1.0);
  if (!temperature) return Error(temperature.error());
  if (!top_p) return Error(top_p.error());
  if (*temperature) out.sampling.temperature = static_cast<float>(**temperature);
  if (*top_p) {
    if (**top_p == 0.0) return Error(bad_request("top_p: must be greater than 0", "top_p"));
    out.sampling.top_p = static_cast<float>(**top_p);
  }
  if (const json* top_k = field(body, "top_k"); top_k != nullptr) {
    if (!top_k->is_number_integer() || top_k->get<int64_t>() < 0 || top_k->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Error(bad_request("top_k: must be a non-negative integer", "top_k"));
    }
    out.sampling.top_k = static_cast<int32_t>(top_k->get<int64_t>());
  }
  if (const json* stop = field(body, "stop_sequences"); stop != nullptr) {
    if (!stop->is_array()) return Error(bad_request("stop_sequences: must be an array of strings", "stop_sequences"));
    if (static_cast<int>(stop->size()) > kMaxStopStrings) {
      return Error(bad_request(fmt::format("stop_sequences: at most {}", kMaxStopStrings), "stop_sequences"));
    }
    for (const json& s : *stop) {
      if (!s.is_string() || s.get<std::string>().empty() || s.get<std::string>().size() > kMaxStopLength) {
        return Error(bad_request(fmt::format("stop_sequences: each must be a string of 1 to {} bytes", kMaxStopLength), "stop_sequences"));
      }
      out.stop.push_back(s.get<std::string>());
    }
  }
  if (const json* stream = field(body, "stream"); stream != nullptr) {
    if (!stream->is_boolean()) return Error(bad_request("stream: must be a boolean", "stream"));
    out.stream = stream->get<bool>();
  }
  out.include_usage = true;
  if (const json* ignore_eos = field(body, "ignore_eos"); ignore_eos != nullptr) {
    if (!ignore_eos->is_boolean()) return Error(bad_request("ignore_eos: must be a boolean", "ignore_eos"));
    out.ignore_eos = ignore_eos->get<bool>();
  }
  if (const json* metadata = field(body, "metadata"); metadata != nullptr) {
    if (!metadata->is_object()) return Error(bad_request("metadata: must be an object", "metadata"));
    for (const auto& [key, value] : metadata->items()) {
      if (key != "user_id") return Error(bad_request(fmt::format("metadata.{}: Extra inputs are not permitted", key), "metadata." + key));
      if (!value.is_string() && !value.is_null()) return Error(bad_request("metadata.user_id: must be a string", "metadata.user_id"));
    }
  }
  if (const json* provider = field(body, "provider"); provider != nullptr) {
    return Error(bad_request("provider: use the OpenAI-compatible endpoints for provider preferences", "provider"));
  }
  return out;
}

AnthropicRenderer::AnthropicRenderer(const Request& request) : id_(random_id()), model_(request.model) {}

json AnthropicRenderer::error_json(const ApiError& error) {
  std::string type = "invalid_request_error";
  switch (error.status) {
    case 400: type = "invalid_request_error"; break;
    case 401: type = "authentication_error"; break;
    case 402: type = "billing_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "request_too_large"; break;
    case 429: type = "rate_limit_error"; break;
    case 503:
    case 529: type = "overloaded_error"; break;
    case 504: type = "timeout_error"; break;
    default: type = error.status >= 500 ? "api_error" : "invalid_request_error";
  }
  return {{"type", "error"}, {"error", {{"type", type}, {"message", error.message}}}};
}

json AnthropicRenderer::usage_json(const Usage& u) {
  json out = {{"input_tokens", std::max<int64_t>(0, u.prompt_tokens - u.cached_tokens - u.cache_write_tokens)},
              {"output_tokens", u.completion_tokens},
              {"cache_read_input_tokens", u.cached_tokens},
              {"cache_creation_input_tokens", u.cache_write_tokens},
              {"cache_creation",
               {{"ephemeral_5m_input_tokens", u.cache_write_tokens - u.cache_write_1h_tokens},
                {"ephemeral_1h_input_tokens", u.cache_write_1h_tokens}}}};
  if (u.retention_denied_tokens > 0) out["cache_retention_denied_tokens"] = u.retention_denied_tokens;
  if (u.cost_usd) out["cost"] = *u.cost_usd;
  return out;
}

std::string AnthropicRenderer::stop_reason(const std::string& finish_reason) {
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "stop_sequence") return "stop_sequence";
  return "end_turn";
}

std::string AnthropicRenderer::stream_start(const Event& first) {
  if (!first.model.empty()) model_ = first.model;
  // The prompt's counts go out here, where Anthropic sends them (SDKs and cost trackers read them
  // from message_start); message_delta repeats them with the output count.
  json message = {{"id", id_},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"content", json::array()},
                  {"model", model_},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", usage_json(first.usage)}};
  if (!first.deployment.empty()) message["provider"] = first.deployment;  // OpenRouter's field: which deployment answered
  return sse_event("message_start", {{"type", "message_start"}, {"message", message}}) +
         sse_event("content_block_start", {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}}) +
         sse_event("ping", {{"type", "ping"}});
}

std::string AnthropicRenderer::stream_event(const Event& event) {
  if (event.error) return stream_error(*event.error);
  std::string out;
  if (!event.text.empty()) {
    out += sse_event("content_block_delta",
                     {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", event.text}}}});
  }
  if (event.finished) {
    out += sse_event("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}});
    out += sse_event("message_delta", {{"type", "message_delta"},
                                       {"delta", {{"stop_reason", stop_reason(event.finish_reason)}, {"stop_sequence", nullptr}}},
                                       {"usage", usage_json(event.usage)}});
    out += sse_event("message_stop", {{"type", "message_stop"}});
  }
  return out;
}

std::string AnthropicRenderer::stream_error(const ApiError& error) { return sse_event("error", error_json(error)); }

std::string AnthropicRenderer::full_response(const std::string& text, const std::vector<TokenLogprob>&, const Event& last) {
  if (!last.model.empty()) model_ = last.model;
  json out = {{"id", id_},
              {"type", "message"},
              {"role", "assistant"},
              {"model", model_},
              {"content", json::array({{{"type", "text"}, {"text", text}}})},
              {"stop_reason", stop_reason(last.finish_reason)},
              {"stop_sequence", nullptr},
              {"usage", usage_json(last.usage)}};
  if (!last.deployment.empty()) out["provider"] = last.deployment;
  return dump_json(out);
}

http::Response AnthropicRenderer::error_response(const ApiError& error) const { return json_error_response(error, error_json(error)); }

}  // namespace tern::wire
