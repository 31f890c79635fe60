#pragma once
// JSON helpers the schema adapters share: reading optional fields, and writing bodies that are always
// valid UTF-8 (a token can end in the middle of a character).

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "wire/types.h"
#include "http/server.h"

namespace tern::wire {

/// The member `name` of `body` if present and not null, else nullptr.
inline const nlohmann::json* field(const nlohmann::json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

/// `object[key]` when it is an integer, else `fallback` (servers leave fields out or send nulls).
inline int64_t int_or(const nlohmann::json& object, const char* key, int64_t fallback) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

/// `object[key]` when it is a string, else `fallback`.
inline std::string string_or(const nlohmann::json& object, const char* key, std::string fallback) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::move(fallback);
}

/// Compact JSON text, invalid UTF-8 replaced by U+FFFD.
inline std::string dump_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

/// "data: <json>\n\n", the SSE framing OpenAI streams use.
inline std::string sse_data(const nlohmann::json& payload) { return "data: " + dump_json(payload) + "\n\n"; }

/// "event: <name>\ndata: <json>\n\n", the SSE framing Anthropic streams use.
inline std::string sse_event(std::string_view name, const nlohmann::json& payload) {
  return "event: " + std::string(name) + "\ndata: " + dump_json(payload) + "\n\n";
}

/// A JSON response with this status.
inline http::Response json_response(int status, const nlohmann::json& body) {
  return {.status = status, .body = dump_json(body), .content_type = "application/json", .headers = {}, .close_connection = false};
}

/// An error response with a JSON body, and Retry-After when the error carries one.
inline http::Response json_error_response(const ApiError& error, const nlohmann::json& body) {
  http::Response response{.status = error.status, .body = dump_json(body), .content_type = "application/json", .headers = {},
                          .close_connection = false};
  if (!error.retry_after.empty()) response.headers.emplace_back("Retry-After", error.retry_after);
  return response;
}

}  // namespace tern::wire
