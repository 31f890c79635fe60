#pragma once
// An error as the OpenAI API reports it: HTTP status plus {"error": {message, type, param, code}}.

#include <string>

#include <nlohmann/json.hpp>

namespace tern::api {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  ///< the offending request field, if any
  std::string code;

  nlohmann::json to_json() const {
    return {{"error",
             {{"message", message},
              {"type", type},
              {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
              {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}}}};
  }
};

inline ApiError bad_request(std::string message, std::string param = {}) {
  return {.status = 400, .message = std::move(message), .type = "invalid_request_error", .param = std::move(param), .code = {}};
}

}  // namespace tern::api
