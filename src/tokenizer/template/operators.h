#pragma once
// Python's operators on template values: `+ - * / // % **`, unary `- +`, comparisons and `in`.
// Integer arithmetic is int64 and fails on overflow (Python's ints are unbounded; no chat template
// comes near the limit, and failing beats wrapping).

#include "tokenizer/template/ast.h"
#include "tokenizer/template/builtins.h"
#include "tokenizer/template/value.h"
#include "util/result.h"

namespace tern::chat {

/// `a op b` for the arithmetic ops (kAdd ... kPow). An undefined operand fails with its message.
Result<Value> binary_op(RenderState& state, Op op, const Value& a, const Value& b);

/// `-a` or `+a`.
Result<Value> unary_op(Op op, const Value& a);

/// `a op b` for the comparison ops (kEq ... kNotIn).
Result<bool> compare_op(Op op, const Value& a, const Value& b);

/// Python `item in container`.
Result<bool> contains(const Value& container, const Value& item);

/// Python printf-style `format % args` (the `%` operator on strings and the `format` filter), for
/// the conversions %s %r %d %i %f %x %%; anything else fails.
Result<std::string> percent_format(RenderState& state, const std::string& format, const Value& args);

}  // namespace tern::chat
