#include "router/prompt_encoder.h"

#include <fmt/format.h>

#include <algorithm>

#include "gguf/gguf_file.h"
#include "model/catalog.h"
#include "model/model.h"
#include "tool_calls/prompt.h"

namespace tern::router {

Result<std::vector<int32_t>> encode_conversation(const chat::ChatTemplate& chat_template, const tok::Tokenizer& tokenizer,
                                                 const tool_calls::Format& tool_format, const wire::Request& request,
                                                 const nlohmann::ordered_json& messages) {
  const bool has_tool_history = std::any_of(messages.begin(), messages.end(), [](const nlohmann::ordered_json& m) {
    return m.contains("tool_calls") || m.value("role", std::string()) == "tool";
  });
  if (!request.wants_tools() && !has_tool_history) return chat::encode_chat(chat_template, tokenizer, messages);
  std::span<const wire::ToolDefinition> offered;
  if (request.wants_tools()) offered = request.tools;
  const auto input = tool_calls::template_input(tool_format, messages, offered);
  return chat::encode_chat(chat_template, tokenizer, input.messages, input.tools);
}

PromptEncoder::PromptEncoder(tok::Tokenizer tokenizer, std::optional<chat::ChatTemplate> chat_template, tool_calls::Format tool_format)
    : tokenizer_(std::move(tokenizer)), chat_template_(std::move(chat_template)), tool_format_(std::move(tool_format)) {}

Result<std::shared_ptr<const PromptEncoder>> PromptEncoder::load(const std::string& model, const std::string& chat_template_file) {
  auto path = models::resolve_model(model, {});
  if (!path) return std::unexpected(path.error());
  auto file = gguf::GgufFile::open(*path);
  if (!file) return std::unexpected(file.error());
  auto tokenizer = tok::Tokenizer::from_gguf(*file);
  if (!tokenizer) return fail("{}: the tokenizer: {}", *path, tokenizer.error().message);
  // A template file that cannot be read is an error; a model without a template of its own encodes
  // completions only (chat requests get "the model has no chat template").
  std::optional<std::string> source;
  if (auto found = model::chat_template_source(*file, chat_template_file)) {
    source = std::move(*found);
  } else if (!chat_template_file.empty()) {
    return std::unexpected(found.error());
  }
  std::optional<chat::ChatTemplate> chat_template;
  tool_calls::Format tool_format;
  if (source) {
    auto parsed = chat::ChatTemplate::parse(*source);
    if (!parsed) return fail("{}: the chat template: {}", *path, parsed.error().message);
    chat_template = std::move(*parsed);
    tool_format = tool_calls::detect_format(*source);
  }
  return std::shared_ptr<const PromptEncoder>(new PromptEncoder(std::move(*tokenizer), std::move(chat_template), std::move(tool_format)));
}

Result<std::vector<int32_t>> PromptEncoder::encode(const wire::Request& request) const {
  if (request.kind == wire::RequestKind::kChat) {
    if (!chat_template_) return fail("the model has no chat template");
    return encode_conversation(*chat_template_, tokenizer_, tool_format_, request, request.messages);
  }
  if (request.prompt) return tokenizer_.encode(*request.prompt, {.add_special = true, .parse_special = false});
  return request.prompt_tokens;
}

}  // namespace tern::router
