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

/// A block's cache_control, if any, as a breakpoint `chars` bytes into neutral message `message`.
std::expected<void, ApiError> block_breakpoint(const json& block, const std::string& where, int message, size_t chars,
                                               std::vector<CacheBreakpoint>& breakpoints) {
  const json* control = field(block, "cache_control");
  if (control == nullptr) return {};
  auto ttl = cache_ttl(*control, where + ".cache_control");
  if (!ttl) return Error(ttl.error());
  breakpoints.push_back({.message = message, .chars = chars, .ttl_s = *ttl});
  return {};
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
    if (auto ok = block_breakpoint(block, where, message, text.size(), breakpoints); !ok) return Error(ok.error());
  }
  return text;
}

/// The text of a tool_result's content: a string or text blocks.
std::expected<std::string, ApiError> tool_result_text(const json& block, const std::string& where) {
  const json* content = field(block, "content");
  if (content == nullptr) return std::string();
  std::vector<CacheBreakpoint> ignored;  // cache_control inside a tool result: its block's own mark counts
  return content_text(*content, where + ".content", 0, ignored);
}

/// One user or assistant turn into neutral messages (appended to `out`): text blocks become the turn's
/// content; an assistant's tool_use blocks its tool_calls; a user's tool_result blocks become `tool`
/// messages before the turn's text (Anthropic puts them first). `call_ids` holds the tool_use ids seen
/// so far: a tool_result must answer one.
std::expected<void, ApiError> append_turn(const json& m, const std::string& role, const std::string& param, Request& out,
                                          std::set<std::string>& call_ids) {
  const json* content = field(m, "content");
  if (content == nullptr) return Error(bad_request(fmt::format("{}.content: Field required", param), param + ".content"));
  if (content->is_string()) {
    out.messages.push_back({{"role", role}, {"content", content->get<std::string>()}});
    return {};
  }
  if (!content->is_array()) return Error(bad_request(fmt::format("{}.content: must be a string or an array of content blocks", param), param + ".content"));
  std::string text;
  std::vector<std::pair<size_t, int64_t>> text_marks;  // breakpoints in the turn's text: (chars, ttl)
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (size_t i = 0; i < content->size(); ++i) {
    const json& block = (*content)[i];
    const std::string where = fmt::format("{}.content.{}", param, i);
    if (!block.is_object() || !block.contains("type") || !block["type"].is_string()) {
      return Error(bad_request(fmt::format("{}: a content block must be an object with a 'type'", where), where));
    }
    const std::string type = block["type"].get<std::string>();
    if (type == "text") {
      if (!block.contains("text") || !block["text"].is_string()) return Error(bad_request(fmt::format("{}.text: Field required (a string)", where), where + ".text"));
      text += block["text"].get<std::string>();
      std::vector<CacheBreakpoint> mark;
      if (auto ok = block_breakpoint(block, where, 0, text.size(), mark); !ok) return Error(ok.error());
      for (const auto& b : mark) text_marks.emplace_back(b.chars, b.ttl_s);
    } else if (type == "tool_use" && role == "assistant") {
      const json* id = field(block, "id");
      const json* name = field(block, "name");
      const json* input = field(block, "input");
      if (id == nullptr || !id->is_string() || id->get<std::string>().empty()) return Error(bad_request(fmt::format("{}.id: Field required", where), where + ".id"));
      if (name == nullptr || !name->is_string() || !is_valid_tool_name(name->get<std::string>())) {
        return Error(bad_request(fmt::format("{}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'", where), where + ".name"));
      }
      if (input == nullptr || !input->is_object()) return Error(bad_request(fmt::format("{}.input: Input should be an object", where), where + ".input"));
      call_ids.insert(id->get<std::string>());
      calls.push_back({{"id", *id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", input->dump()}}}});
      std::vector<CacheBreakpoint> mark;
      if (auto ok = block_breakpoint(block, where, 0, text.size(), mark); !ok) return Error(ok.error());
      for (const auto& b : mark) text_marks.emplace_back(b.chars, b.ttl_s);
    } else if (type == "tool_result" && role == "user") {
      const json* id = field(block, "tool_use_id");
      if (id == nullptr || !id->is_string()) return Error(bad_request(fmt::format("{}.tool_use_id: Field required", where), where + ".tool_use_id"));
      if (!call_ids.contains(id->get<std::string>())) {
        return Error(bad_request(fmt::format("{}.tool_use_id: '{}' answers no tool_use block of an earlier assistant turn", where, id->get<std::string>()),
                                 where + ".tool_use_id"));
      }
      auto result = tool_result_text(block, where);
      if (!result) return Error(result.error());
      nlohmann::ordered_json message = {{"role", "tool"}, {"tool_call_id", *id}, {"content", *result}};
      if (const json* is_error = field(block, "is_error"); is_error != nullptr) {
        if (!is_error->is_boolean()) return Error(bad_request(fmt::format("{}.is_error: Input should be a valid boolean", where), where + ".is_error"));
        if (is_error->get<bool>()) message["is_error"] = true;
      }
      if (auto ok = block_breakpoint(block, where, static_cast<int>(out.messages.size()), result->size(), out.cache_breakpoints); !ok) {
        return Error(ok.error());
      }
      out.messages.push_back(std::move(message));
    } else {
      return Error(bad_request(fmt::format("{}: content block type '{}' is not supported in a {} turn (text{})", where, type, role,
                                           role == "assistant" ? ", tool_use" : ", tool_result"),
                               where + ".type"));
    }
  }
  // The turn's text (for a user turn of only tool results: none, unless it marks a breakpoint).
  if (role == "assistant" || !text.empty() || out.messages.empty() || out.messages.back()["role"] != "tool") {
    const int index = static_cast<int>(out.messages.size());
    for (const auto& [chars, ttl] : text_marks) out.cache_breakpoints.push_back({.message = index, .chars = chars, .ttl_s = ttl});
    nlohmann::ordered_json message = {{"role", role}, {"content", text}};
    if (!calls.empty()) message["tool_calls"] = std::move(calls);
    out.messages.push_back(std::move(message));
  }
  return {};
}

/// tools: [{name, description?, input_schema, cache_control?, strict?}] (client tools; server tools,
/// which carry a versioned `type`, run on Anthropic's side and are refused here).
std::expected<void, ApiError> parse_tools(const json& body, Request& out) {
  const json* tools = field(body, "tools");
  if (tools == nullptr) return {};
  if (!tools->is_array()) return Error(bad_request("tools: Input should be a valid list", "tools"));
  if (tools->size() > 128) return Error(bad_request("tools: List should have at most 128 items", "tools"));
  std::set<std::string> names;
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& tool = (*tools)[i];
    const std::string where = fmt::format("tools.{}", i);
    if (!tool.is_object()) return Error(bad_request(fmt::format("{}: Input should be an object", where), where));
    for (const auto& [key, value] : tool.items()) {
      static const std::set<std::string> known = {"name", "description", "input_schema", "cache_control", "type", "strict"};
      if (!known.contains(key)) return Error(bad_request(fmt::format("{}.{}: Extra inputs are not permitted", where, key), where + "." + key));
    }
    if (const json* type = field(tool, "type"); type != nullptr && *type != "custom") {
      return Error(bad_request(fmt::format("{}.type: server tool '{}' is not supported by tern (client tools only)", where,
                                           type->is_string() ? type->get<std::string>() : type->dump()), where + ".type"));
    }
    ToolDefinition definition;
    const json* name = field(tool, "name");
    if (name == nullptr || !name->is_string() || !is_valid_tool_name(name->get<std::string>())) {
      return Error(bad_request(fmt::format("{}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'", where), where + ".name"));
    }
    definition.name = name->get<std::string>();
    if (!names.insert(definition.name).second) return Error(bad_request(fmt::format("{}.name: tool names must be unique ('{}')", where, definition.name), where + ".name"));
    if (const json* description = field(tool, "description"); description != nullptr) {
      if (!description->is_string()) return Error(bad_request(fmt::format("{}.description: Input should be a valid string", where), where + ".description"));
      definition.description = description->get<std::string>();
    }
    const json* schema = field(tool, "input_schema");
    if (schema == nullptr || !schema->is_object()) return Error(bad_request(fmt::format("{}.input_schema: Field required (an object)", where), where + ".input_schema"));
    definition.parameters = *schema;
    if (const json* strict = field(tool, "strict"); strict != nullptr) {
      if (!strict->is_boolean()) return Error(bad_request(fmt::format("{}.strict: Input should be a valid boolean", where), where + ".strict"));
      definition.strict = strict->get<bool>();
    }
    out.tools.push_back(std::move(definition));
  }
  return {};
}

/// tool_choice: {type: auto | any | tool (with name) | none, disable_parallel_tool_use?}.
std::expected<void, ApiError> parse_tool_choice(const json& body, Request& out) {
  const json* choice = field(body, "tool_choice");
  if (choice == nullptr) return {};
  if (!choice->is_object() || !choice->contains("type") || !(*choice)["type"].is_string()) {
    return Error(bad_request("tool_choice: Input should be an object with a type (auto, any, tool, none)", "tool_choice"));
  }
  const std::string type = (*choice)["type"].get<std::string>();
  using Mode = ToolChoice::Mode;
  if (type == "auto") out.tool_choice.mode = Mode::kAuto;
  else if (type == "any") out.tool_choice.mode = Mode::kRequired;
  else if (type == "none") out.tool_choice.mode = Mode::kNone;
  else if (type == "tool") out.tool_choice.mode = Mode::kNamed;
  else return Error(bad_request(fmt::format("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none' (got '{}')", type), "tool_choice.type"));
  if (out.tool_choice.mode == Mode::kNamed) {
    const json* name = field(*choice, "name");
    if (name == nullptr || !name->is_string()) return Error(bad_request("tool_choice.name: Field required", "tool_choice.name"));
    out.tool_choice.name = name->get<std::string>();
    const bool known = std::any_of(out.tools.begin(), out.tools.end(), [&](const ToolDefinition& t) { return t.name == out.tool_choice.name; });
    if (!known) return Error(bad_request(fmt::format("tool_choice.name: '{}' is not one of the tools", out.tool_choice.name), "tool_choice.name"));
  }
  if (const json* disable = field(*choice, "disable_parallel_tool_use"); disable != nullptr) {
    if (!disable->is_boolean()) return Error(bad_request("tool_choice.disable_parallel_tool_use: Input should be a valid boolean", "tool_choice.disable_parallel_tool_use"));
    out.tool_choice.parallel = !disable->get<bool>();
  }
  if (out.tools.empty() && out.tool_choice.mode != Mode::kNone && out.tool_choice.mode != Mode::kAuto) {
    return Error(bad_request("tool_choice: a tool must be given in 'tools'", "tool_choice"));
  }
  return {};
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
  // ignore_eos is tern's (as on its OpenAI endpoints): generate exactly max_tokens, for benchmarks;
  // speculative too: speculative decoding asked for or refused for this request.
  static const std::set<std::string> known = {"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p",
                                              "top_k", "stream", "metadata", "tools", "tool_choice", "thinking", "service_tier",
                                              "cache_control", "container", "diagnostics", "inference_geo", "output_config", "speed",
                                              "user_profile_id", "workspace_id", "models", "fallbacks", "provider", "ignore_eos", "speculative"};
  for (const auto& [key, value] : body.items()) {
    if (!known.contains(key)) return Error(bad_request(fmt::format("{}: Extra inputs are not permitted", key), key));
  }
  if (const json* v = field(body, "thinking"); v != nullptr && !(v->is_object() && string_or(*v, "type", "") == "disabled")) {
    return Error(bad_request("thinking: not supported by tern yet", "thinking"));
  }
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
  std::set<std::string> call_ids;  // tool_use ids of the assistant turns so far
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string param = fmt::format("messages.{}", i);
    if (!m.is_object()) return Error(bad_request(fmt::format("{}: must be an object", param), param));
    const json* role = field(m, "role");
    if (role == nullptr || !role->is_string() || (*role != "user" && *role != "assistant")) {
      return Error(bad_request(fmt::format("{}.role: Input should be 'user' or 'assistant'", param), param + ".role"));
    }
    if (auto ok = append_turn(m, role->get<std::string>(), param, out, call_ids); !ok) return Error(ok.error());
  }
  if (auto ok = parse_tools(body, out); !ok) return Error(ok.error());
  if (!out.tools.empty()) {
    // nlohmann::json sorts keys; a schema's own order decides the order properties come in.
    const auto ordered = nlohmann::ordered_json::parse(text, nullptr, false);
    if (!ordered.is_discarded()) {
      for (size_t i = 0; i < out.tools.size(); ++i) out.tools[i].parameters = ordered["tools"][i]["input_schema"];
    }
  }
  if (auto ok = parse_tool_choice(body, out); !ok) return Error(ok.error());
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
  if (const json* speculative = field(body, "speculative"); speculative != nullptr) {
    if (!speculative->is_boolean()) return Error(bad_request("speculative: must be a boolean", "speculative"));
    out.speculative = speculative->get<bool>();
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
  if (finish_reason == "tool_calls") return "tool_use";
  return "end_turn";
}

/// stop_reason and stop_sequence of a finished message: a stop string that ended it is "stop_sequence".
json AnthropicRenderer::stop_fields(const Event& last) {
  if (last.finish_reason == "stop" && !last.stop_sequence.empty()) {
    return {{"stop_reason", "stop_sequence"}, {"stop_sequence", last.stop_sequence}};
  }
  return {{"stop_reason", stop_reason(last.finish_reason)}, {"stop_sequence", nullptr}};
}

namespace {

/// A tool call's input as Anthropic gives it: the arguments' JSON object (an unreadable one: empty).
json tool_input(const std::string& arguments) {
  json input = json::parse(arguments.empty() ? std::string_view("{}") : std::string_view(arguments), nullptr, false);
  return input.is_object() ? input : json::object();
}

}  // namespace

std::string AnthropicRenderer::close_block() {
  if (open_block_ < 0) return {};
  const int index = open_block_;
  open_block_ = -1;
  return sse_event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
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
  std::string out = sse_event("message_start", {{"type", "message_start"}, {"message", message}});
  // A reply that opens with a tool call has no text block before it (as Anthropic streams it); else
  // the text block opens at once, before the ping, as Anthropic's do.
  if (first.tool_calls.empty() || !first.text.empty()) {
    open_block_ = 0;
    open_is_tool_ = false;
    next_block_ = 1;
    out += sse_event("content_block_start", {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}});
  }
  return out + sse_event("ping", {{"type", "ping"}});
}

// Blocks, as Anthropic streams them: one open at a time, started, given deltas, stopped. Text goes to
// the open text block (a new one after a tool call); each tool call is a tool_use block whose input
// streams as input_json_delta pieces.
std::string AnthropicRenderer::stream_event(const Event& event) {
  if (event.error) return stream_error(*event.error);
  std::string out;
  if (!event.text.empty()) {
    if (open_block_ < 0 || open_is_tool_) {
      out += close_block();
      open_block_ = next_block_++;
      open_is_tool_ = false;
      out += sse_event("content_block_start", {{"type", "content_block_start"}, {"index", open_block_}, {"content_block", {{"type", "text"}, {"text", ""}}}});
    }
    out += sse_event("content_block_delta",
                     {{"type", "content_block_delta"}, {"index", open_block_}, {"delta", {{"type", "text_delta"}, {"text", event.text}}}});
  }
  for (const ToolCallDelta& d : event.tool_calls) {
    auto block = tool_blocks_.find(d.index);
    if (block == tool_blocks_.end()) {
      out += close_block();
      open_block_ = next_block_++;
      open_is_tool_ = true;
      block = tool_blocks_.emplace(d.index, open_block_).first;
      out += sse_event("content_block_start", {{"type", "content_block_start"}, {"index", open_block_},
                                               {"content_block", {{"type", "tool_use"}, {"id", d.id}, {"name", d.name}, {"input", json::object()}}}});
    }
    if (!d.arguments.empty()) {
      out += sse_event("content_block_delta", {{"type", "content_block_delta"}, {"index", block->second},
                                               {"delta", {{"type", "input_json_delta"}, {"partial_json", d.arguments}}}});
    }
  }
  if (event.finished) {
    out += close_block();
    // message_delta's usage (MessageDeltaUsage) has the counts but not Message.usage's cache_creation breakdown.
    json usage = usage_json(event.usage);
    usage.erase("cache_creation");
    out += sse_event("message_delta", {{"type", "message_delta"}, {"delta", stop_fields(event)}, {"usage", std::move(usage)}});
    out += sse_event("message_stop", {{"type", "message_stop"}});
  }
  return out;
}

std::string AnthropicRenderer::stream_error(const ApiError& error) { return sse_event("error", error_json(error)); }

std::string AnthropicRenderer::full_response(const Reply& reply, const Event& last) {
  if (!last.model.empty()) model_ = last.model;
  json content = json::array();
  if (!reply.text.empty() || reply.tool_calls.empty()) content.push_back({{"type", "text"}, {"text", reply.text}});
  for (const ToolCall& call : reply.tool_calls) {
    content.push_back({{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", tool_input(call.arguments)}});
  }
  const json stop = stop_fields(last);
  json out = {{"id", id_},
              {"type", "message"},
              {"role", "assistant"},
              {"model", model_},
              {"content", std::move(content)},
              {"stop_reason", stop["stop_reason"]},
              {"stop_sequence", stop["stop_sequence"]},
              {"usage", usage_json(last.usage)}};
  if (!last.deployment.empty()) out["provider"] = last.deployment;
  return dump_json(out);
}

http::Response AnthropicRenderer::error_response(const ApiError& error) const { return json_error_response(error, error_json(error)); }

}  // namespace tern::wire
