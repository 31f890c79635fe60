#include "wire/stream.h"

#include "wire/json_util.h"

#include <algorithm>
#include <cctype>

namespace tern::wire {

using json = nlohmann::json;

std::optional<ApiError> parse_error_body(int status, std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto e = j.find("error");
  if (e == j.end() || !e->is_object()) return std::nullopt;
  const std::string message = string_or(*e, "message", "");
  if (message.empty()) return std::nullopt;
  ApiError out = server_error(status, message);
  out.param = string_or(*e, "param", "");
  out.code = string_or(*e, "code", "");
  const std::string type = string_or(*e, "type", "");
  if (type == "invalid_request_error" || type == "not_found_error" || type == "permission_error") out.type = type;
  return out;
}

bool is_valid_tool_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; });
}

void add_tool_call_deltas(std::vector<ToolCall>& calls, const std::vector<ToolCallDelta>& deltas) {
  for (const ToolCallDelta& d : deltas) {
    if (d.index < 0 || d.index > 1024) continue;  // an upstream's nonsense index: never an unbounded allocation
    if (static_cast<size_t>(d.index) >= calls.size()) calls.resize(static_cast<size_t>(d.index) + 1);
    ToolCall& call = calls[static_cast<size_t>(d.index)];
    if (!d.id.empty()) call.id = d.id;
    if (!d.name.empty()) call.name = d.name;
    call.arguments += d.arguments;
  }
}

}  // namespace tern::wire
