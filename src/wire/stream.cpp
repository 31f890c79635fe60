#include "wire/stream.h"

#include "wire/json_util.h"

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

}  // namespace tern::wire
