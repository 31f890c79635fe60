#include "tokenizer/template/chat_template.h"

#include "tokenizer/template/evaluator.h"
#include "tokenizer/template/json_value.h"
#include "tokenizer/template/parser.h"

namespace tern::chat {

Result<ChatTemplate> ChatTemplate::parse(std::string_view source) {
  auto program = parse_program(source);
  if (!program) return std::unexpected(program.error());
  return ChatTemplate(std::move(*program));
}

namespace {

template <class Json>
Result<std::string> render_json(const Program& program, const Json& context, const RenderOptions& options) {
  if (!context.is_object()) return fail("chat template context must be a JSON object");
  auto value = value_from_json(context);
  if (!value) return with_context("chat template context", value.error());
  return evaluate(program, *value, options);
}

}  // namespace

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& context, const RenderOptions& options) const {
  return render_json(*program_, context, options);
}

Result<std::string> ChatTemplate::render(const nlohmann::json& context, const RenderOptions& options) const {
  return render_json(*program_, context, options);
}

}  // namespace tern::chat
