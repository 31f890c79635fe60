#pragma once
// Walks the AST and writes the prompt. Scoping follows jinja2: `if` shares its scope, every `for`
// iteration and every macro call gets a fresh one (so `set` inside a loop does not leak out; use a
// namespace for that), and top-level `set` replaces render variables.

#include <string>

#include "tokenizer/template/parser.h"
#include "tokenizer/template/render_options.h"
#include "tokenizer/template/value.h"
#include "util/result.h"

namespace tern::chat {

/// Renders `program` with `context` (a dict of variables). Errors name the template line.
Result<std::string> evaluate(const Program& program, const Value& context, const RenderOptions& options);

}  // namespace tern::chat
