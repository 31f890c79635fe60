#include "api/openai_response.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>

namespace tern::api {
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

}  // namespace

ResponseBuilder::ResponseBuilder(const OpenAiRequest& request, std::string model_name, const tok::Tokenizer& tokenizer)
    : request_(request),
      id_(random_id(request.endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()),
      model_(std::move(model_name)),
      tokenizer_(tokenizer) {}

json ResponseBuilder::envelope(bool chunk) const {
  const bool chat = request_.endpoint == Endpoint::kChat;
  return {{"id", id_},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", created_},
          {"model", model_},
          {"system_fingerprint", "tern"}};
}

json ResponseBuilder::usage_json(const engine::Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json ResponseBuilder::token_entry(int32_t token, float logprob) const {
  const std::string bytes = tokenizer_.token_bytes(token, /*render_special=*/true);
  json byte_list = json::array();
  for (unsigned char c : bytes) byte_list.push_back(c);
  return {{"token", printable(bytes)}, {"logprob", finite(logprob)}, {"bytes", byte_list}};
}

json ResponseBuilder::logprobs_json(const std::vector<engine::TokenLogprob>& logprobs) {
  if (request_.top_logprobs < 0) return nullptr;
  if (request_.endpoint == Endpoint::kChat) {
    json content = json::array();
    for (const auto& lp : logprobs) {
      json entry = token_entry(lp.token, lp.logprob);
      json top = json::array();
      for (const auto& [id, value] : lp.top) top.push_back(token_entry(id, value));
      entry["top_logprobs"] = std::move(top);
      content.push_back(std::move(entry));
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const auto& lp : logprobs) {
    const std::string text = printable(tokenizer_.token_bytes(lp.token, true));
    tokens.push_back(text);
    token_logprobs.push_back(finite(lp.logprob));
    json alternatives = json::object();
    for (const auto& [id, value] : lp.top) alternatives[printable(tokenizer_.token_bytes(id, true))] = finite(value);
    top.push_back(std::move(alternatives));
    offsets.push_back(text_offset_);
    text_offset_ += static_cast<int64_t>(tokenizer_.token_bytes(lp.token).size());
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json ResponseBuilder::role_chunk() const {
  json out = envelope(true);
  out["choices"] = json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  if (request_.include_usage) out["usage"] = nullptr;
  return out;
}

json ResponseBuilder::delta_chunk(const std::string& text, const std::vector<engine::TokenLogprob>& logprobs,
                                  const std::string& finish_reason) {
  json out = envelope(true);
  json choice = {{"index", 0}};
  if (request_.endpoint == Endpoint::kChat) {
    choice["delta"] = text.empty() && !finish_reason.empty() ? json::object() : json{{"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_json(logprobs);
  choice["finish_reason"] = finish(finish_reason);
  out["choices"] = json::array({std::move(choice)});
  if (request_.include_usage) out["usage"] = nullptr;
  return out;
}

json ResponseBuilder::usage_chunk(const engine::Usage& usage) const {
  json out = envelope(true);
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return out;
}

json ResponseBuilder::full_response(const std::string& text, const std::vector<engine::TokenLogprob>& logprobs,
                                    const std::string& finish_reason, const engine::Usage& usage) {
  json out = envelope(false);
  json choice = {{"index", 0}};
  if (request_.endpoint == Endpoint::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}, {"tool_calls", json::array()}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_json(logprobs);
  choice["finish_reason"] = finish(finish_reason);
  out["choices"] = json::array({std::move(choice)});
  out["usage"] = usage_json(usage);
  return out;
}

}  // namespace tern::api
