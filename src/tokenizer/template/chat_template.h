#pragma once
// Chat templates: the Jinja programs shipped with models (tokenizer_config.json, GGUF
// `tokenizer.chat_template`) that turn a conversation into the prompt text. Rendering must be byte-
// identical to Hugging Face `transformers.apply_chat_template`, which runs Python jinja2 in an
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols) with a custom
// `tojson` and the globals `raise_exception` and `strftime_now`. This is a C++ interpreter for the
// subset of jinja2 chat templates use; docs/chat-templates.md lists it. Anything outside the subset
// fails at parse time, naming the line, rather than rendering a subtly different prompt.
//
//   auto tmpl = ChatTemplate::parse(source);              // once per model
//   auto prompt = tmpl->render(ordered_json{             // per request
//       {"messages", messages}, {"tools", nullptr}, {"add_generation_prompt", true},
//       {"bos_token", "<s>"}, {"eos_token", "</s>"}});

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tokenizer/template/render_options.h"
#include "util/result.h"

namespace tern::chat {

struct Program;

/// A parsed template. Immutable: copies share the parsed program, and render() may run concurrently.
class ChatTemplate {
 public:
  /// Parses a template; an unsupported construct or syntax error -> Error naming the template line
  /// (e.g. "chat template line 3: unsupported filter 'xmlattr'").
  static Result<ChatTemplate> parse(std::string_view source);

  /// Renders with a JSON context: {"messages": [...], "tools": [...], "add_generation_prompt": bool,
  /// "bos_token": "...", "eos_token": "...", any other variables}. Object key order is kept, as in
  /// the Python dicts HF renders with (it shows in `tojson` output and in dict iteration). HF passes
  /// `tools` and `documents` as None when absent; pass null for them to match exactly.
  /// A runtime error (raise_exception called by the template, calling an undefined function, type
  /// errors, a RenderLimits limit) -> Error naming the line.
  Result<std::string> render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;

  /// Same, for nlohmann::json. Its objects iterate in sorted key order, not insertion order, so
  /// prefer ordered_json when objects (tool schemas, tool-call arguments) reach the output.
  Result<std::string> render(const nlohmann::json& context, const RenderOptions& options = {}) const;

 private:
  explicit ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}

  std::shared_ptr<const Program> program_;  // immutable, so copies of a ChatTemplate share it
};

}  // namespace tern::chat
