#include "wire/openai/request.h"
#include "wire/json_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <set>

namespace tern::wire {
namespace {

using json = nlohmann::json;
using Error = std::unexpected<ApiError>;

constexpr int kMaxTopLogprobs = 20;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

/// Present and not null.
std::expected<std::optional<double>, ApiError> number(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return Error(bad_request(fmt::format("'{}' must be a number, not {}", name, type_name(*v)), name));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) return Error(bad_request(fmt::format("'{}' is {}; it must be in [{}, {}]", name, x, lo, hi), name));
  return x;
}

std::expected<std::optional<int64_t>, ApiError> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) {
    return Error(bad_request(fmt::format("'{}' must be an integer, not {}", name, v->is_number() ? "a fraction" : type_name(*v)), name));
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Error(bad_request(fmt::format("'{}' is out of range", name), name));
  }
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) return Error(bad_request(fmt::format("'{}' is {}; it must be in [{}, {}]", name, x, lo, hi), name));
  return x;
}

std::expected<std::optional<bool>, ApiError> boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return Error(bad_request(fmt::format("'{}' must be a boolean, not {}", name, type_name(*v)), name));
  return v->get<bool>();
}

std::expected<std::optional<std::string>, ApiError> string(const json& body, const char* name) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) return Error(bad_request(fmt::format("'{}' must be a string, not {}", name, type_name(*v)), name));
  return v->get<std::string>();
}

ApiError unsupported(const std::string& name, const std::string& why) {
  return bad_request(fmt::format("'{}' is not supported{}", name, why), name);
}

std::expected<std::string, ApiError> message_content(const json& content, size_t index) {
  const std::string param = fmt::format("messages[{}].content", index);
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Error(bad_request(fmt::format("'{}' must be a string or an array of text parts", param), param));
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return Error(bad_request(fmt::format("each part of '{}' must be an object with a 'type'", param), param));
    }
    if (part["type"] != "text") {
      return Error(unsupported(param, fmt::format(": part type '{}' (only text)", part["type"].get<std::string>())));
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return Error(bad_request(fmt::format("a text part of '{}' needs a string 'text'", param), param));
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

/// An assistant message's tool_calls: [{id, type: "function", function: {name, arguments}}]; their ids
/// join `call_ids` (tool messages must answer one).
std::expected<nlohmann::ordered_json, ApiError> parse_tool_calls(const json& calls, const std::string& param, std::set<std::string>& call_ids) {
  if (!calls.is_array()) return Error(bad_request(fmt::format("'{}' must be an array", param), param));
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    const json& call = calls[k];
    const std::string where = fmt::format("{}[{}]", param, k);
    const json* id = call.is_object() ? field(call, "id") : nullptr;
    const json* function = call.is_object() ? field(call, "function") : nullptr;
    if (id == nullptr || !id->is_string() || id->get<std::string>().empty() || function == nullptr || !function->is_object()) {
      return Error(bad_request(fmt::format("'{}' must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}", where), where));
    }
    if (const json* type = field(call, "type"); type != nullptr && *type != "function") {
      return Error(bad_request(fmt::format("'{}.type' must be \"function\"", where), where + ".type"));
    }
    const json* name = field(*function, "name");
    const json* arguments = field(*function, "arguments");
    if (name == nullptr || !name->is_string() || arguments == nullptr || !arguments->is_string()) {
      return Error(bad_request(fmt::format("'{}.function' needs a string 'name' and 'arguments' (JSON text)", where), where + ".function"));
    }
    call_ids.insert(id->get<std::string>());
    out.push_back({{"id", *id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", *arguments}}}});
  }
  return out;
}

std::expected<nlohmann::ordered_json, ApiError> parse_messages(const json& body) {
  const json* messages = field(body, "messages");
  if (messages == nullptr) return Error(bad_request("'messages' is required", "messages"));
  if (!messages->is_array() || messages->empty()) return Error(bad_request("'messages' must be a non-empty array", "messages"));
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  std::set<std::string> call_ids;  // of the assistant messages so far
  static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool"};
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) return Error(bad_request(fmt::format("'{}' must be an object", param), param));
    if (!m.contains("role") || !m["role"].is_string() || !roles.contains(m["role"].get<std::string>())) {
      return Error(bad_request(fmt::format("'{}.role' must be one of system, developer, user, assistant, tool", param), param + ".role"));
    }
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // chat templates know "system"
    const json* tool_calls = field(m, "tool_calls");
    if (tool_calls != nullptr && role != "assistant") {
      return Error(bad_request(fmt::format("'{}.tool_calls' is only allowed on an assistant message", param), param + ".tool_calls"));
    }
    std::string content;
    if (m.contains("content") && !m["content"].is_null()) {
      auto text = message_content(m["content"], i);
      if (!text) return Error(text.error());
      content = std::move(*text);
    } else if (role != "assistant") {
      return Error(bad_request(fmt::format("'{}.content' is required", param), param + ".content"));
    }
    nlohmann::ordered_json message = {{"role", role}, {"content", content}};
    if (m.contains("name") && m["name"].is_string()) message["name"] = m["name"];
    if (tool_calls != nullptr) {
      auto calls = parse_tool_calls(*tool_calls, param + ".tool_calls", call_ids);
      if (!calls) return Error(calls.error());
      if (!calls->empty()) message["tool_calls"] = std::move(*calls);  // [] (as some clients echo it) says nothing
    }
    if (role == "tool") {
      // A tool's result answers a call an earlier assistant message made.
      const json* id = field(m, "tool_call_id");
      if (id == nullptr || !id->is_string()) return Error(bad_request(fmt::format("'{}.tool_call_id' is required (a string)", param), param + ".tool_call_id"));
      if (!call_ids.contains(id->get<std::string>())) {
        return Error(bad_request(fmt::format("'{}.tool_call_id' \"{}\" answers no tool call of an earlier assistant message", param,
                                             id->get<std::string>()), param + ".tool_call_id"));
      }
      message["tool_call_id"] = *id;
    }
    out.push_back(std::move(message));
  }
  return out;
}

std::expected<void, ApiError> parse_stop(const json& body, Request& out) {
  const json* stop = field(body, "stop");
  if (stop == nullptr) return {};
  std::vector<json> items;
  if (stop->is_string()) {
    items.push_back(*stop);
  } else if (stop->is_array()) {
    items.assign(stop->begin(), stop->end());
  } else {
    return Error(bad_request("'stop' must be a string or an array of strings", "stop"));
  }
  if (static_cast<int>(items.size()) > kMaxStopStrings) {
    return Error(bad_request(fmt::format("'stop' has {} strings; at most {}", items.size(), kMaxStopStrings), "stop"));
  }
  for (const json& item : items) {
    if (!item.is_string()) return Error(bad_request("'stop' must contain only strings", "stop"));
    const auto s = item.get<std::string>();
    if (s.empty() || s.size() > kMaxStopLength) {
      return Error(bad_request(fmt::format("each 'stop' string must be 1 to {} bytes", kMaxStopLength), "stop"));
    }
    out.stop.push_back(s);
  }
  return {};
}

std::expected<void, ApiError> parse_prompt(const json& body, Request& out) {
  const json* prompt = field(body, "prompt");
  if (prompt == nullptr) return Error(bad_request("'prompt' is required", "prompt"));
  if (prompt->is_string()) {
    out.prompt = prompt->get<std::string>();
    return {};
  }
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    out.prompt = (*prompt)[0].get<std::string>();
    return {};
  }
  if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number_integer()) {
    for (const json& t : *prompt) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Error(bad_request("a token-id 'prompt' must hold only non-negative integers", "prompt"));
      }
      out.prompt_tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    return {};
  }
  if (prompt->is_array() && prompt->size() > 1) {
    return Error(unsupported("prompt", ": several prompts in one request (send one request per prompt)"));
  }
  return Error(bad_request("'prompt' must be a string, an array of one string, or an array of token ids", "prompt"));
}

// Fields OpenAI defines that tern accepts with only their neutral value.
std::expected<void, ApiError> check_neutral_fields(const json& body) {
  if (const json* v = field(body, "logit_bias"); v != nullptr && !(v->is_object() && v->empty())) {
    return Error(unsupported("logit_bias", ""));
  }
  if (const json* v = field(body, "functions"); v != nullptr) return Error(unsupported("functions", " (deprecated: use 'tools')"));
  if (const json* v = field(body, "echo"); v != nullptr && !(v->is_boolean() && !v->get<bool>())) {
    return Error(unsupported("echo", ""));
  }
  if (const json* v = field(body, "best_of"); v != nullptr && !(v->is_number_integer() && v->get<int64_t>() == 1)) {
    return Error(unsupported("best_of", ": only 1"));
  }
  if (const json* v = field(body, "suffix"); v != nullptr && !(v->is_string() && v->get<std::string>().empty())) {
    return Error(unsupported("suffix", ""));
  }
  return {};
}


/// tools: [{type: "function", function: {name, description?, parameters?, strict?}}].
std::expected<void, ApiError> parse_tools(const json& body, Request& out) {
  const json* tools = field(body, "tools");
  if (tools == nullptr) return {};
  if (!tools->is_array()) return Error(bad_request("'tools' must be an array", "tools"));
  if (tools->size() > 128) return Error(bad_request(fmt::format("'tools' has {} entries; at most 128", tools->size()), "tools"));
  std::set<std::string> names;
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& tool = (*tools)[i];
    const std::string where = fmt::format("tools[{}]", i);
    if (!tool.is_object()) return Error(bad_request(fmt::format("'{}' must be an object", where), where));
    if (const json* type = field(tool, "type"); type == nullptr || *type != "function") {
      return Error(bad_request(fmt::format("'{}.type' must be \"function\"", where), where + ".type"));
    }
    const json* function = field(tool, "function");
    if (function == nullptr || !function->is_object()) return Error(bad_request(fmt::format("'{}.function' is required (an object)", where), where + ".function"));
    ToolDefinition definition;
    const json* name = field(*function, "name");
    if (name == nullptr || !name->is_string() || !is_valid_tool_name(name->get<std::string>())) {
      return Error(bad_request(fmt::format("'{}.function.name' must match ^[a-zA-Z0-9_-]{{1,64}}$", where), where + ".function.name"));
    }
    definition.name = name->get<std::string>();
    if (!names.insert(definition.name).second) {
      return Error(bad_request(fmt::format("'{}.function.name': two tools are named '{}'", where, definition.name), where + ".function.name"));
    }
    auto description = string(*function, "description");
    if (!description) return Error(bad_request(fmt::format("'{}.function.description' must be a string", where), where + ".function.description"));
    definition.description = description->value_or("");
    if (const json* parameters = field(*function, "parameters"); parameters != nullptr) {
      if (!parameters->is_object()) {
        return Error(bad_request(fmt::format("'{}.function.parameters' must be a JSON Schema object", where), where + ".function.parameters"));
      }
      definition.parameters = *parameters;
    } else {
      definition.parameters = {{"type", "object"}, {"properties", json::object()}};
    }
    auto strict = boolean(*function, "strict");
    if (!strict) return Error(bad_request(fmt::format("'{}.function.strict' must be a boolean", where), where + ".function.strict"));
    definition.strict = strict->value_or(false);
    out.tools.push_back(std::move(definition));
  }
  return {};
}

/// tool_choice: "none" | "auto" | "required" | {type: "function", function: {name}}; parallel_tool_calls.
std::expected<void, ApiError> parse_tool_choice(const json& body, Request& out) {
  auto parallel = boolean(body, "parallel_tool_calls");
  if (!parallel) return Error(parallel.error());
  out.tool_choice.parallel = parallel->value_or(true);
  const json* choice = field(body, "tool_choice");
  if (choice == nullptr) {
    out.tool_choice.mode = ToolChoice::Mode::kAuto;
    return {};
  }
  using Mode = ToolChoice::Mode;
  if (choice->is_string()) {
    const std::string mode = choice->get<std::string>();
    if (mode == "none") out.tool_choice.mode = Mode::kNone;
    else if (mode == "auto") out.tool_choice.mode = Mode::kAuto;
    else if (mode == "required") out.tool_choice.mode = Mode::kRequired;
    else return Error(bad_request("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice"));
  } else if (choice->is_object() && field(*choice, "function") != nullptr && (*choice)["function"].is_object() &&
             (*choice)["function"].contains("name") && (*choice)["function"]["name"].is_string()) {
    out.tool_choice.mode = Mode::kNamed;
    out.tool_choice.name = (*choice)["function"]["name"].get<std::string>();
    const bool known = std::any_of(out.tools.begin(), out.tools.end(), [&](const ToolDefinition& t) { return t.name == out.tool_choice.name; });
    if (!known) return Error(bad_request(fmt::format("'tool_choice' names the function '{}', which is not in 'tools'", out.tool_choice.name), "tool_choice"));
  } else {
    return Error(bad_request("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice"));
  }
  if (out.tools.empty() && out.tool_choice.mode != Mode::kNone) {
    return Error(bad_request("'tool_choice' is only allowed when 'tools' are given", "tool_choice"));
  }
  return {};
}

/// response_format: {type: "text"} | {type: "json_object"} | {type: "json_schema", json_schema: {name, description?, schema?, strict?}}.
std::expected<void, ApiError> parse_response_format(const json& body, Request& out) {
  const json* format = field(body, "response_format");
  if (format == nullptr) return {};
  const char* shape = "'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}";
  if (!format->is_object() || !format->contains("type") || !(*format)["type"].is_string()) return Error(bad_request(shape, "response_format"));
  const std::string type = (*format)["type"].get<std::string>();
  ResponseFormat& f = out.response_format;
  if (type == "text") {
    f.kind = ResponseFormat::Kind::kText;
  } else if (type == "json_object") {
    f.kind = ResponseFormat::Kind::kJsonObject;
  } else if (type == "json_schema") {
    f.kind = ResponseFormat::Kind::kJsonSchema;
    const json* spec = field(*format, "json_schema");
    if (spec == nullptr || !spec->is_object()) {
      return Error(bad_request("'response_format.json_schema' is required (an object with a name and a schema)", "response_format.json_schema"));
    }
    const json* name = field(*spec, "name");
    if (name == nullptr || !name->is_string() || !is_valid_tool_name(name->get<std::string>())) {
      return Error(bad_request("'response_format.json_schema.name' must match ^[a-zA-Z0-9_-]{1,64}$", "response_format.json_schema.name"));
    }
    f.name = name->get<std::string>();
    auto description = string(*spec, "description");
    if (!description) return Error(bad_request("'response_format.json_schema.description' must be a string", "response_format.json_schema.description"));
    f.description = description->value_or("");
    if (const json* schema = field(*spec, "schema"); schema != nullptr) {
      if (!schema->is_object()) return Error(bad_request("'response_format.json_schema.schema' must be a JSON Schema object", "response_format.json_schema.schema"));
      f.schema = *schema;  // key order restored by the caller from the body's text
    }
    auto strict = boolean(*spec, "strict");
    if (!strict) return Error(bad_request("'response_format.json_schema.strict' must be a boolean", "response_format.json_schema.strict"));
    f.strict = strict->value_or(false);
  } else {
    return Error(bad_request(fmt::format("{} (got \"{}\")", shape, type), "response_format.type"));
  }
  return {};
}

std::expected<std::vector<std::string>, ApiError> string_list(const json& body, const char* name, const std::string& param) {
  std::vector<std::string> out;
  const json* v = field(body, name);
  if (v == nullptr) return out;
  if (!v->is_array()) return Error(bad_request(fmt::format("'{}' must be an array of strings", param), param));
  if (v->size() > 32) return Error(bad_request(fmt::format("'{}' has {} entries; at most 32", param, v->size()), param));
  for (const json& item : *v) {
    if (!item.is_string() || item.get<std::string>().empty()) {
      return Error(bad_request(fmt::format("'{}' must contain only non-empty strings", param), param));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// OpenRouter's routing fields: `models` and `provider`. `models` alone (no `model`) names the primary
// first, as OpenRouter takes it.
std::expected<void, ApiError> parse_routing(const json& body, Request& out) {
  auto models = string_list(body, "models", "models");
  if (!models) return Error(models.error());
  if (out.model.empty()) {
    if (models->empty()) return Error(bad_request("'model' is required (or 'models', a list whose first entry is tried first)", "model"));
    out.model = models->front();
  }
  for (auto& m : *models) {
    if (m != out.model && std::find(out.fallback_models.begin(), out.fallback_models.end(), m) == out.fallback_models.end()) {
      out.fallback_models.push_back(std::move(m));
    }
  }
  const json* provider = field(body, "provider");
  if (provider == nullptr) return {};
  if (!provider->is_object()) return Error(bad_request("'provider' must be an object", "provider"));
  static const std::set<std::string> known = {"order", "only", "ignore", "allow_fallbacks", "sort", "max_price",
                                              "require_parameters", "data_collection"};
  for (const auto& [key, value] : provider->items()) {
    if (!known.contains(key)) return Error(bad_request(fmt::format("unknown field 'provider.{}'", key), "provider." + key));
  }
  auto& prefs = out.provider;
  for (auto [name, list] : {std::pair{"order", &prefs.order}, std::pair{"only", &prefs.only}, std::pair{"ignore", &prefs.ignore}}) {
    auto parsed = string_list(*provider, name, fmt::format("provider.{}", name));
    if (!parsed) return Error(parsed.error());
    *list = std::move(*parsed);
  }
  auto fallbacks = boolean(*provider, "allow_fallbacks");
  if (!fallbacks) return Error(fallbacks.error());
  prefs.allow_fallbacks = fallbacks->value_or(true);
  auto sort = string(*provider, "sort");
  if (!sort) return Error(sort.error());
  if (*sort && **sort != "price" && **sort != "throughput" && **sort != "latency") {
    return Error(bad_request("'provider.sort' must be one of price, throughput, latency", "provider.sort"));
  }
  prefs.sort = sort->value_or("");
  if (const json* max_price = field(*provider, "max_price"); max_price != nullptr) {
    if (!max_price->is_object()) return Error(bad_request("'provider.max_price' must be an object", "provider.max_price"));
    for (const auto& [key, value] : max_price->items()) {
      if (key != "prompt" && key != "completion") {
        return Error(bad_request(fmt::format("unknown field 'provider.max_price.{}' (prompt, completion: USD per 1M tokens)", key),
                                 "provider.max_price." + key));
      }
    }
    auto prompt = number(*max_price, "prompt", 0, 1e9);
    auto completion = number(*max_price, "completion", 0, 1e9);
    if (!prompt) return Error(prompt.error());
    if (!completion) return Error(completion.error());
    prefs.max_prompt_price = *prompt;
    prefs.max_completion_price = *completion;
  }
  return {};
}

}  // namespace

std::expected<Request, ApiError> parse_openai_request(RequestKind kind, std::string_view text) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {  // syntax errors, and numbers beyond a double (1e400)
    return Error(bad_request(fmt::format("the request body is not valid JSON: {}", e.what())));
  }
  if (!body.is_object()) return Error(bad_request("the request body must be a JSON object"));

  static const std::set<std::string> common = {
      "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
      "repetition_penalty", "seed", "stop", "n", "stream", "stream_options", "user", "logprobs", "ignore_eos", "speculative",
      "cache_salt", "logit_bias", "metadata", "store", "service_tier", "best_of", "models", "provider",
      "prompt_cache_retention", "prompt_cache_key"};
  static const std::set<std::string> chat_only = {"messages", "max_completion_tokens", "top_logprobs", "response_format",
                                                  "tools", "tool_choice", "functions", "parallel_tool_calls"};
  static const std::set<std::string> completion_only = {"prompt", "echo", "suffix"};
  const auto& own = kind == RequestKind::kChat ? chat_only : completion_only;
  for (const auto& [key, value] : body.items()) {
    if (!common.contains(key) && !own.contains(key)) {
      return Error(bad_request(fmt::format("unknown or unsupported field '{}'", key), key));
    }
  }
  if (auto ok = check_neutral_fields(body); !ok) return Error(ok.error());

  Request out;
  out.kind = kind;
  auto model = string(body, "model");
  if (!model) return Error(model.error());
  if (*model && (*model)->empty()) return Error(bad_request("'model' must not be empty", "model"));
  out.model = model->value_or("");
  if (auto ok = parse_routing(body, out); !ok) return Error(ok.error());

  if (kind == RequestKind::kChat) {
    auto messages = parse_messages(body);
    if (!messages) return Error(messages.error());
    out.messages = std::move(*messages);
    if (auto ok = parse_tools(body, out); !ok) return Error(ok.error());
    if (auto ok = parse_tool_choice(body, out); !ok) return Error(ok.error());
    if (auto ok = parse_response_format(body, out); !ok) return Error(ok.error());
    if (out.response_format.schema.is_object() || !out.tools.empty()) {
      // nlohmann::json sorts keys; a schema's own order decides the order properties come in.
      const auto ordered = nlohmann::ordered_json::parse(text, nullptr, false);
      if (!ordered.is_discarded()) {
        if (out.response_format.schema.is_object()) out.response_format.schema = ordered["response_format"]["json_schema"]["schema"];
        for (size_t i = 0; i < out.tools.size(); ++i) {
          const auto& function = ordered["tools"][i]["function"];
          if (function.contains("parameters")) out.tools[i].parameters = function["parameters"];
        }
      }
    }
  } else if (auto ok = parse_prompt(body, out); !ok) {
    return Error(ok.error());
  }

  constexpr int64_t kMaxTokens = int64_t{1} << 30;
  auto max_tokens = integer(body, "max_tokens", 1, kMaxTokens);
  if (!max_tokens) return Error(max_tokens.error());
  out.max_tokens = *max_tokens;
  if (kind == RequestKind::kChat) {
    auto max_completion = integer(body, "max_completion_tokens", 1, kMaxTokens);
    if (!max_completion) return Error(max_completion.error());
    if (*max_completion) out.max_tokens = *max_completion;
  }

  auto n = integer(body, "n", 1, 128);
  if (!n) return Error(n.error());
  if (*n && **n != 1) return Error(unsupported("n", ": only n = 1 for now (send several requests)"));

  auto temperature = number(body, "temperature", 0.0, 2.0);
  auto top_p = number(body, "top_p", 0.0, 1.0);
  auto min_p = number(body, "min_p", 0.0, 1.0);
  auto presence = number(body, "presence_penalty", -2.0, 2.0);
  auto frequency = number(body, "frequency_penalty", -2.0, 2.0);
  auto repetition = number(body, "repetition_penalty", 0.0, 2.0);
  auto top_k = integer(body, "top_k", -1, std::numeric_limits<int32_t>::max());
  for (const auto* r : {&temperature, &top_p, &min_p, &presence, &frequency, &repetition}) {
    if (!*r) return Error(r->error());
  }
  if (!top_k) return Error(top_k.error());
  if (*top_p && **top_p == 0.0) return Error(bad_request("'top_p' must be greater than 0", "top_p"));
  if (*repetition && **repetition == 0.0) return Error(bad_request("'repetition_penalty' must be greater than 0", "repetition_penalty"));
  auto& s = out.sampling;
  s = Sampling{};
  if (*temperature) s.temperature = static_cast<float>(**temperature);
  if (*top_p) s.top_p = static_cast<float>(**top_p);
  if (*min_p) s.min_p = static_cast<float>(**min_p);
  if (*presence) s.presence_penalty = static_cast<float>(**presence);
  if (*frequency) s.frequency_penalty = static_cast<float>(**frequency);
  if (*repetition) s.repetition_penalty = static_cast<float>(**repetition);
  if (*top_k) s.top_k = static_cast<int32_t>(std::max<int64_t>(**top_k, 0));

  if (const json* seed = field(body, "seed"); seed != nullptr) {
    if (!seed->is_number_integer()) return Error(bad_request("'seed' must be an integer", "seed"));
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
    out.seed_given = true;
  }
  if (auto ok = parse_stop(body, out); !ok) return Error(ok.error());

  auto stream = boolean(body, "stream");
  if (!stream) return Error(stream.error());
  out.stream = stream->value_or(false);
  if (const json* options = field(body, "stream_options"); options != nullptr) {
    if (!options->is_object()) return Error(bad_request("'stream_options' must be an object", "stream_options"));
    if (!out.stream) return Error(bad_request("'stream_options' is only allowed with \"stream\": true", "stream_options"));
    for (const auto& [key, value] : options->items()) {
      if (key != "include_usage" && key != "continuous_usage_stats") {
        return Error(bad_request(fmt::format("unknown field 'stream_options.{}'", key), "stream_options"));
      }
    }
    if (const json* include = field(*options, "include_usage"); include != nullptr && !include->is_boolean()) {
      return Error(bad_request("'stream_options.include_usage' must be a boolean", "stream_options.include_usage"));
    }
    auto include = boolean(*options, "include_usage");
    if (!include) return Error(include.error());
    out.include_usage = include->value_or(false);
  }

  if (kind == RequestKind::kChat) {
    auto logprobs = boolean(body, "logprobs");
    if (!logprobs) return Error(logprobs.error());
    auto top = integer(body, "top_logprobs", 0, kMaxTopLogprobs);
    if (!top) return Error(top.error());
    if (*top && !logprobs->value_or(false)) return Error(bad_request("'top_logprobs' needs \"logprobs\": true", "top_logprobs"));
    if (logprobs->value_or(false)) out.top_logprobs = static_cast<int>(top->value_or(0));
  } else {
    auto logprobs = integer(body, "logprobs", 0, kMaxTopLogprobs);
    if (!logprobs) return Error(logprobs.error());
    if (*logprobs) out.top_logprobs = static_cast<int>(**logprobs);
  }

  auto ignore_eos = boolean(body, "ignore_eos");
  if (!ignore_eos) return Error(ignore_eos.error());
  out.ignore_eos = ignore_eos->value_or(false);
  auto speculative = boolean(body, "speculative");
  if (!speculative) return Error(speculative.error());
  out.speculative = *speculative;
  auto salt = string(body, "cache_salt");
  if (!salt) return Error(salt.error());
  out.cache_salt = salt->value_or("");
  // Retention: "24h" keeps the whole prompt cached for a day after its last use (within the org's
  // quota); "in_memory" is the default LRU prefix cache.
  auto retention = string(body, "prompt_cache_retention");
  if (!retention) return Error(retention.error());
  if (*retention == "24h") {
    out.cache_breakpoints.push_back({.message = -1, .chars = 0, .ttl_s = 24 * 3600});
  } else if (*retention && **retention != "in_memory") {
    return Error(bad_request(fmt::format("prompt_cache_retention: must be 'in_memory' or '24h' (got '{}')", **retention),
                             "prompt_cache_retention"));
  }
  auto cache_key = string(body, "prompt_cache_key");
  if (!cache_key) return Error(cache_key.error());
  out.prompt_cache_key = cache_key->value_or("");
  if (out.prompt_cache_key.size() > 1024) return Error(bad_request("prompt_cache_key: at most 1024 bytes", "prompt_cache_key"));
  if (auto user = string(body, "user"); !user) return Error(user.error());
  return out;
}

}  // namespace tern::wire
