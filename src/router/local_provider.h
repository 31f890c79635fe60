#pragma once
// A model loaded in this process, as a Provider: its engine, and how a request becomes tokens (chat
// template for chat, plain text or token ids for completions).

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "engine/lora/adapter_registry.h"
#include "model/model.h"
#include "router/provider.h"
#include "tokenizer/template/chat_prompt.h"
#include "tool_calls/format.h"

namespace tern::router {

class LocalProvider final : public Provider {
 public:
  /// `tool_format`: how the model writes tool calls (tool_calls::detect_format of its template).
  /// `adapters`: the LoRA adapters a request may name (wire::Request::adapter); may be null.
  LocalProvider(std::string name, model::Model& model, engine::Engine& engine, std::optional<chat::ChatTemplate> chat_template,
                tool_calls::Format tool_format = {}, engine::AdapterRegistry* adapters = nullptr);

  const std::string& name() const { return name_; }
  /// Names a request's "model" field may use for this model besides the public one: the file's name.
  const std::string& file_name() const;
  engine::Engine& engine() const { return engine_; }
  int64_t max_model_len() const { return engine_.config().max_model_len; }

  /// Renders and tokenizes the prompt, fills the engine request (max_tokens default, seed) and checks
  /// it against the context.
  std::expected<engine::GenerationRequest, wire::ApiError> prepare(const wire::Request& request) const;

  std::expected<std::shared_ptr<Call>, wire::ApiError> submit(const wire::Request& request, wire::EventSink sink) override;
  int64_t num_in_flight() const override { return engine_.num_in_flight(); }
  void stop() override { engine_.stop(); }

 private:
  /// The request's cache breakpoints as token counts of `prompt` (its tokenized form).
  std::vector<engine::PinBreakpoint> pin_breakpoints(const wire::Request& request, const std::vector<int32_t>& prompt) const;
  /// The conversation (cut or whole) as prompt tokens: with the tools the reply may call, in the
  /// model's tool syntax (tool_calls/prompt.h).
  Result<std::vector<int32_t>> encode_conversation(const wire::Request& request, const nlohmann::ordered_json& messages) const;
  engine::GrammarCompiler& grammars() const;
  /// The grammar of a JSON Schema (null: any object), or a 400 naming `param` when nothing can keep
  /// to it: not compilable, or no value satisfies it. `subject` names the schema in messages.
  std::expected<std::shared_ptr<engine::TokenConstraint>, wire::ApiError> schema_constraint(const nlohmann::ordered_json& schema,
                                                                                           const std::string& param,
                                                                                           const std::string& subject) const;
  /// The grammar of a request's response_format (a JSON Schema; json_object: any object).
  std::expected<std::shared_ptr<engine::TokenConstraint>, wire::ApiError> output_constraint(const wire::Request& request) const;
  /// The grammar of a reply that may or must call the request's tools.
  std::expected<std::shared_ptr<engine::TokenConstraint>, wire::ApiError> tool_constraint(const wire::Request& request) const;

  std::string name_;
  model::Model& model_;
  engine::Engine& engine_;
  std::optional<chat::ChatTemplate> chat_template_;
  tool_calls::Format tool_format_;
  engine::AdapterRegistry* adapters_;
  // Made on the first constrained request (the vocabulary's grammar tables take 15-100 ms).
  mutable std::once_flag grammars_once_;
  mutable std::unique_ptr<engine::GrammarCompiler> grammars_;
};

}  // namespace tern::router
