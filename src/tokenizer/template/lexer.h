#pragma once
// Splits template source into tokens exactly as jinja2's lexer does with HF's settings
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False). Whitespace control is applied
// here, to the text tokens, so the parser and evaluator never see whitespace that jinja2 would drop:
//
//   "  {%- if x -%}  \n"   `-` strips all whitespace (newlines too) on that side of the tag
//   "  {% if x %}\n"       lstrip_blocks drops the indentation before a block/comment tag that starts a
//                          line; trim_blocks drops the single newline after a block/comment tag
//   "  {{ x }}\n"          variables get neither; only their explicit `-` strips
//   "{%+ if x %}"          `+` keeps the indentation that lstrip_blocks would remove
//
// Comments are dropped and `{% raw %}` bodies become plain text.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace tern::chat {

enum class TokenType {
  kText,           ///< literal template text, already whitespace-controlled
  kVariableBegin,  ///< {{
  kVariableEnd,    ///< }}
  kBlockBegin,     ///< {%
  kBlockEnd,       ///< %}
  kName,           ///< identifier or keyword (if, in, not, true, ...)
  kString,         ///< string literal, unescaped
  kInteger,
  kFloat,
  kOperator,  ///< + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { } ;
  kEnd,       ///< end of the template
};

struct Token {
  TokenType type = TokenType::kEnd;
  std::string text;  ///< the text, name, unescaped string or operator
  int line = 1;      ///< 1-based template line where the token starts
  int64_t int_value = 0;
  double float_value = 0.0;
};

/// Tokenizes `source`. Errors name the line ("chat template line 4: unexpected char '$'").
Result<std::vector<Token>> tokenize(std::string_view source);

}  // namespace tern::chat
