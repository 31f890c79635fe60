#pragma once
// How a request becomes prompt tokens: the chat template (with the tools the reply may call, in the
// model's tool syntax) for chat, the tokenizer for a text prompt, the ids themselves for a token
// prompt. The local provider encodes with its loaded model's tokenizer and template; a gateway routing
// on replicas' KV-cache contents encodes with the same file's (loaded without weights), so its tokens
// are the ones the replica will see.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/template/chat_prompt.h"
#include "tokenizer/tokenizer.h"
#include "tool_calls/format.h"
#include "util/result.h"
#include "wire/types.h"

namespace tern::router {

/// `messages` (the request's own, or a cut of them) through the template, with the request's tools
/// when it offers any or the conversation holds calls.
Result<std::vector<int32_t>> encode_conversation(const chat::ChatTemplate& chat_template, const tok::Tokenizer& tokenizer,
                                                 const tool_calls::Format& tool_format, const wire::Request& request,
                                                 const nlohmann::ordered_json& messages);

/// A model's tokenizer and chat template without its weights.
class PromptEncoder {
 public:
  /// `model`: a model alias or .gguf path (resolved as -m is); `chat_template_file`: a Jinja file that
  /// replaces the model's own (empty: the model's).
  static Result<std::shared_ptr<const PromptEncoder>> load(const std::string& model, const std::string& chat_template_file = {});

  /// The request's prompt tokens, as a tern replica serving the same file computes them.
  Result<std::vector<int32_t>> encode(const wire::Request& request) const;

 private:
  PromptEncoder(tok::Tokenizer tokenizer, std::optional<chat::ChatTemplate> chat_template, tool_calls::Format tool_format);
  tok::Tokenizer tokenizer_;
  std::optional<chat::ChatTemplate> chat_template_;
  tool_calls::Format tool_format_;
};

}  // namespace tern::router
