#pragma once
// Builds the AST from tokens with jinja2's grammar (jinja2/parser.py): the same operator precedence,
// the same tuple rules, the same statement forms. Everything outside the supported subset is rejected
// here, naming the line, so that an unsupported template never renders a silently wrong prompt.

#include <memory>
#include <string_view>

#include "tokenizer/template/ast.h"
#include "util/result.h"

namespace tern::chat {

struct Program {
  Body body;
};

/// Parses a whole template.
Result<std::shared_ptr<const Program>> parse_program(std::string_view source);

}  // namespace tern::chat
