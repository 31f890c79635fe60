#include "api/served_model.h"

#include <fmt/format.h>

#include <random>

namespace tern::api {

ServedModel::ServedModel(std::string name, model::Model& model, engine::Engine& engine,
                         std::optional<chat::ChatTemplate> chat_template)
    : name_(std::move(name)), model_(model), engine_(engine), chat_template_(std::move(chat_template)) {}

bool ServedModel::answers_to(const std::string& requested) const {
  return requested == name_ || requested == model_.file().name();
}

std::expected<engine::GenerationRequest, ApiError> ServedModel::prepare(const OpenAiRequest& request) const {
  engine::GenerationRequest out;
  if (request.endpoint == Endpoint::kChat) {
    if (!chat_template_) {
      return std::unexpected(bad_request(fmt::format("model '{}' has no chat template (a base model?): use /v1/completions, "
                                                     "or start the server with --chat-template FILE", name_)));
    }
    auto ids = chat::encode_chat(*chat_template_, model_.tokenizer(), request.messages);
    if (!ids) return std::unexpected(bad_request(fmt::format("the chat template failed on these messages: {}", ids.error().message), "messages"));
    out.prompt = std::move(*ids);
  } else if (request.prompt) {
    out.prompt = model_.tokenizer().encode(*request.prompt, {.add_special = true, .parse_special = false});
  } else {
    const int64_t vocab = model_.config().vocab_size;
    for (int32_t t : request.prompt_tokens) {
      if (t >= vocab) return std::unexpected(bad_request(fmt::format("prompt token id {} is outside the vocabulary of {}", t, vocab), "prompt"));
    }
    out.prompt = request.prompt_tokens;
  }
  if (out.prompt.empty()) return std::unexpected(bad_request("the prompt is empty", request.endpoint == Endpoint::kChat ? "messages" : "prompt"));
  const int64_t prompt_len = static_cast<int64_t>(out.prompt.size());
  const int64_t room = max_model_len() - prompt_len;
  if (room < 1 || (request.max_tokens && *request.max_tokens > room)) {
    return std::unexpected(bad_request(
        fmt::format("this model's maximum context length is {} tokens; the prompt has {} and {} were requested to generate",
                    max_model_len(), prompt_len, request.max_tokens ? fmt::to_string(*request.max_tokens) : std::string("at least 1")),
        request.max_tokens ? "max_tokens" : (request.endpoint == Endpoint::kChat ? "messages" : "prompt")));
  }
  // Defaults as OpenAI's: completions 16 tokens, chat up to the context.
  out.max_tokens = request.max_tokens.value_or(request.endpoint == Endpoint::kChat ? room : std::min<int64_t>(16, room));
  out.sampling = request.sampling;
  if (!request.seed_given) out.sampling.seed = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  out.stop = request.stop;
  out.ignore_eos = request.ignore_eos;
  out.top_logprobs = request.top_logprobs;
  out.cache_salt = request.cache_salt;
  return out;
}

}  // namespace tern::api
