#include "wire/openai/response.h"
#include "wire/json_util.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>

namespace tern::wire {
namespace {

using json = nlohmann::json;

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

json finish(const std::string& reason) { return reason.empty() ? json(nullptr) : json(reason); }

// JSON strings must be valid UTF-8; a token can be part of a character.
std::string printable(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= bytes.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(bytes[i + k]) & 0xC0) == 0x80;
    if (ok) {
      out.append(bytes, i, len);
      i += len;
    } else {
      out += fmt::format("bytes:\\x{:02x}", c);
      ++i;
    }
  }
  return out;
}

float finite(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0f; }

json token_entry(const std::string& bytes, float logprob) {
  json byte_list = json::array();
  for (unsigned char c : bytes) byte_list.push_back(c);
  return {{"token", printable(bytes)}, {"logprob", finite(logprob)}, {"bytes", byte_list}};
}

}  // namespace

OpenAiRenderer::OpenAiRenderer(const Request& request)
    : kind_(request.kind),
      include_usage_(request.include_usage),
      top_logprobs_(request.top_logprobs),
      id_(random_id(request.kind == RequestKind::kChat ? "chatcmpl-" : "cmpl-")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()),
      model_(request.model) {}

json OpenAiRenderer::envelope(bool chunk) const {
  const bool chat = kind_ == RequestKind::kChat;
  json out = {{"id", id_},
              {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
              {"created", created_},
              {"model", model_},
              {"system_fingerprint", "tern"}};
  // OpenRouter's field, wherever the response names the model that answered: which deployment it was.
  if (!provider_.empty()) out["provider"] = provider_;
  return out;
}

json OpenAiRenderer::usage_json(const Usage& u) {
  json out = {{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
  if (u.cache_write_tokens > 0) out["prompt_tokens_details"]["cache_write_tokens"] = u.cache_write_tokens;
  if (u.retention_denied_tokens > 0) out["prompt_tokens_details"]["cache_retention_denied_tokens"] = u.retention_denied_tokens;
  if (u.cost_usd) out["cost"] = *u.cost_usd;
  return out;
}

json OpenAiRenderer::error_json(const ApiError& error) {
  return {{"error",
           {{"message", error.message},
            {"type", error.type},
            {"param", error.param.empty() ? json(nullptr) : json(error.param)},
            {"code", error.code.empty() ? json(nullptr) : json(error.code)}}}};
}

json OpenAiRenderer::logprobs_json(const std::vector<TokenLogprob>& logprobs) {
  if (top_logprobs_ < 0) return nullptr;
  if (kind_ == RequestKind::kChat) {
    json content = json::array();
    for (const auto& lp : logprobs) {
      json entry = token_entry(lp.bytes, lp.logprob);
      json top = json::array();
      for (const auto& [bytes, value] : lp.top) top.push_back(token_entry(bytes, value));
      entry["top_logprobs"] = std::move(top);
      content.push_back(std::move(entry));
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const auto& lp : logprobs) {
    tokens.push_back(printable(lp.bytes));
    token_logprobs.push_back(finite(lp.logprob));
    json alternatives = json::object();
    for (const auto& [bytes, value] : lp.top) alternatives[printable(bytes)] = finite(value);
    top.push_back(std::move(alternatives));
    offsets.push_back(text_offset_);
    text_offset_ += lp.text_length;
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

std::string OpenAiRenderer::stream_start(const Event& first) {
  if (!first.model.empty()) model_ = first.model;
  provider_ = first.deployment;
  if (kind_ != RequestKind::kChat) return {};
  json out = envelope(true);
  out["choices"] = json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  if (include_usage_) out["usage"] = nullptr;
  return sse_data(out);
}

json OpenAiRenderer::delta_chunk(const std::string& text, const std::vector<TokenLogprob>& logprobs, const std::string& finish_reason) {
  json out = envelope(true);
  json choice = {{"index", 0}};
  if (kind_ == RequestKind::kChat) {
    choice["delta"] = text.empty() && !finish_reason.empty() ? json::object() : json{{"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_json(logprobs);
  choice["finish_reason"] = finish(finish_reason);
  out["choices"] = json::array({std::move(choice)});
  if (include_usage_) out["usage"] = nullptr;
  return out;
}

std::string OpenAiRenderer::stream_event(const Event& event) {
  std::string out;
  if (event.error) out += sse_data(error_json(*event.error));
  if (!event.tool_calls.empty() && kind_ == RequestKind::kChat) {
    // delta.tool_calls: a call's first piece carries its id, type and name; later ones add arguments.
    json calls = json::array();
    for (const ToolCallDelta& d : event.tool_calls) {
      json call = {{"index", d.index}, {"function", {{"arguments", d.arguments}}}};
      if (!d.id.empty()) call["id"] = d.id, call["type"] = "function";
      if (!d.name.empty()) call["function"]["name"] = d.name;
      calls.push_back(std::move(call));
    }
    json chunk = envelope(true);
    chunk["choices"] = json::array({{{"index", 0}, {"delta", {{"tool_calls", std::move(calls)}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
    if (include_usage_) chunk["usage"] = nullptr;
    out += sse_data(chunk);
  }
  if (!event.text.empty() || !event.logprobs.empty() || event.finished) {
    json chunk = delta_chunk(event.text, event.logprobs, event.finished ? event.finish_reason : "");
    // As OpenRouter does: the finishing chunk carries the usage (and its cost) even when the client did
    // not ask for the separate usage chunk of stream_options.include_usage.
    if (event.finished && !include_usage_) chunk["usage"] = usage_json(event.usage);
    out += sse_data(chunk);
  }
  if (event.finished) {
    if (include_usage_) {
      json usage = envelope(true);
      usage["choices"] = json::array();
      usage["usage"] = usage_json(event.usage);
      out += sse_data(usage);
    }
    out += "data: [DONE]\n\n";
  }
  return out;
}

std::string OpenAiRenderer::stream_error(const ApiError& error) { return sse_data(error_json(error)) + "data: [DONE]\n\n"; }

std::string OpenAiRenderer::full_response(const Reply& reply, const Event& last) {
  if (!last.model.empty()) model_ = last.model;
  provider_ = last.deployment;
  json out = envelope(false);
  json choice = {{"index", 0}};
  if (kind_ == RequestKind::kChat) {
    json calls = json::array();
    for (const ToolCall& call : reply.tool_calls) {
      calls.push_back({{"id", call.id}, {"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
    }
    // As OpenAI: a reply of only tool calls has null content.
    const json content = reply.text.empty() && !calls.empty() ? json(nullptr) : json(reply.text);
    choice["message"] = {{"role", "assistant"}, {"content", content}, {"refusal", nullptr}};
    if (!calls.empty()) choice["message"]["tool_calls"] = std::move(calls);  // absent without calls, as OpenAI's
  } else {
    choice["text"] = reply.text;
  }
  choice["logprobs"] = logprobs_json(reply.logprobs);
  choice["finish_reason"] = finish(last.finish_reason);
  out["choices"] = json::array({std::move(choice)});
  out["usage"] = usage_json(last.usage);
  return dump_json(out);
}

http::Response OpenAiRenderer::error_response(const ApiError& error) const { return json_error_response(error, error_json(error)); }

}  // namespace tern::wire
