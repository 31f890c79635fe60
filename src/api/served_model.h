#pragma once
// A model as the API serves it: its public name, the engine that runs it, and how a request becomes
// tokens (chat template for chat, plain text or token ids for completions).

#include <expected>
#include <optional>
#include <string>

#include "api/openai_request.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tokenizer/template/chat_prompt.h"

namespace tern::api {

class ServedModel {
 public:
  ServedModel(std::string name, model::Model& model, engine::Engine& engine, std::optional<chat::ChatTemplate> chat_template);

  const std::string& name() const { return name_; }
  /// Whether a request's "model" field names this model (its name, or the file's name).
  bool answers_to(const std::string& requested) const;
  engine::Engine& engine() const { return engine_; }
  const tok::Tokenizer& tokenizer() const { return model_.tokenizer(); }
  int64_t max_model_len() const { return engine_.config().max_model_len; }

  /// Renders and tokenizes the prompt, fills the engine request (max_tokens default, seed) and checks
  /// it against the context.
  std::expected<engine::GenerationRequest, ApiError> prepare(const OpenAiRequest& request) const;

 private:
  std::string name_;
  model::Model& model_;
  engine::Engine& engine_;
  std::optional<chat::ChatTemplate> chat_template_;
};

}  // namespace tern::api
