// Expressions, with jinja2's precedence (lowest first): `x if c else y`, or, and, not, comparisons and
// `in`, + -, ~, * / // %, **, unary - +, then primaries with their postfixes (.attr, [index], (call))
// and filters/tests (| f, is t). Note `-2 ** 2` is 4 and `2 ** 3 ** 2` is 64, as in jinja2.

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/parser_internal.h"

namespace tern::chat::detail {

Result<ExprPtr> Parser::parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

Result<ExprPtr> Parser::parse_condexpr() {
  const int line = current().line;
  auto expr = parse_or();
  if (!expr) return expr;
  while (skip_name("if")) {
    auto test = parse_or();
    if (!test) return test;
    ExprPtr otherwise;
    if (skip_name("else")) {
      auto r = parse_condexpr();
      if (!r) return r;
      otherwise = std::move(*r);
    }
    auto node = make(ExprKind::kCondition, line);
    node->operands.push_back(std::move(*expr));
    node->operands.push_back(std::move(*test));
    node->operands.push_back(std::move(otherwise));
    expr = std::move(node);
  }
  return expr;
}

Result<ExprPtr> Parser::parse_or() {
  auto left = parse_and();
  if (!left) return left;
  while (at_name("or")) {
    const int line = advance().line;
    auto right = parse_and();
    if (!right) return right;
    auto node = make(ExprKind::kOr, line);
    node->operands.push_back(std::move(*left));
    node->operands.push_back(std::move(*right));
    left = std::move(node);
  }
  return left;
}

Result<ExprPtr> Parser::parse_and() {
  auto left = parse_not();
  if (!left) return left;
  while (at_name("and")) {
    const int line = advance().line;
    auto right = parse_not();
    if (!right) return right;
    auto node = make(ExprKind::kAnd, line);
    node->operands.push_back(std::move(*left));
    node->operands.push_back(std::move(*right));
    left = std::move(node);
  }
  return left;
}

Result<ExprPtr> Parser::parse_not() {
  if (at_name("not")) {
    const int line = advance().line;
    DepthGuard guard(depth_);
    if (auto r = check_depth(line); !r) return std::unexpected(r.error());
    auto operand = parse_not();
    if (!operand) return operand;
    auto node = make(ExprKind::kUnary, line);
    node->op = Op::kNot;
    node->operands.push_back(std::move(*operand));
    return node;
  }
  return parse_compare();
}

Result<ExprPtr> Parser::parse_compare() {
  const int line = current().line;
  auto first = parse_math1();
  if (!first) return first;
  ExprPtr node;
  while (true) {
    Op op;
    if (at_op("=="))
      op = Op::kEq;
    else if (at_op("!="))
      op = Op::kNe;
    else if (at_op("<"))
      op = Op::kLt;
    else if (at_op("<="))
      op = Op::kLe;
    else if (at_op(">"))
      op = Op::kGt;
    else if (at_op(">="))
      op = Op::kGe;
    else if (at_name("in"))
      op = Op::kIn;
    else if (at_name("not") && look().type == TokenType::kName && look().text == "in") {
      advance();
      op = Op::kNotIn;
    } else {
      break;
    }
    advance();
    auto operand = parse_math1();
    if (!operand) return operand;
    if (!node) {
      node = make(ExprKind::kCompare, line);
      node->operands.push_back(std::move(*first));
    }
    node->compare_ops.push_back(op);
    node->operands.push_back(std::move(*operand));
  }
  if (node) return node;
  return first;
}

Result<ExprPtr> Parser::parse_binary(SubParser next, std::initializer_list<std::pair<std::string_view, Op>> ops) {
  auto left = (this->*next)();
  if (!left) return left;
  while (true) {
    const auto* match = std::find_if(ops.begin(), ops.end(), [&](const auto& entry) { return at_op(entry.first); });
    if (match == ops.end()) return left;
    const int line = advance().line;
    auto right = (this->*next)();
    if (!right) return right;
    auto node = make(ExprKind::kBinary, line);
    node->op = match->second;
    node->operands.push_back(std::move(*left));
    node->operands.push_back(std::move(*right));
    left = std::move(node);
  }
}

Result<ExprPtr> Parser::parse_concat() {
  const int line = current().line;
  auto first = parse_math2();
  if (!first) return first;
  if (!at_op("~")) return first;
  auto node = make(ExprKind::kConcat, line);
  node->operands.push_back(std::move(*first));
  while (skip_op("~")) {
    auto next = parse_math2();
    if (!next) return next;
    node->operands.push_back(std::move(*next));
  }
  return node;
}

Result<ExprPtr> Parser::parse_math2() {
  return parse_binary(&Parser::parse_pow, {{"*", Op::kMul}, {"/", Op::kDiv}, {"//", Op::kFloorDiv}, {"%", Op::kMod}});
}

Result<ExprPtr> Parser::parse_unary(bool with_filter) {
  DepthGuard guard(depth_);
  const int line = current().line;
  if (auto r = check_depth(line); !r) return std::unexpected(r.error());
  Result<ExprPtr> node;
  if (at_op("-") || at_op("+")) {
    const Op op = at_op("-") ? Op::kNeg : Op::kPos;
    advance();
    auto operand = parse_unary(false);
    if (!operand) return operand;
    auto unary = make(ExprKind::kUnary, line);
    unary->op = op;
    unary->operands.push_back(std::move(*operand));
    node = std::move(unary);
  } else {
    node = parse_primary();
  }
  if (!node) return node;
  node = parse_postfix(std::move(*node));
  if (!node || !with_filter) return node;
  return parse_filter_expr(std::move(*node));
}

Result<ExprPtr> Parser::parse_primary() {
  const Token& token = current();
  const int line = token.line;
  switch (token.type) {
    case TokenType::kName: {
      advance();
      auto node = make(ExprKind::kConstant, line);
      if (token.text == "true" || token.text == "True") {
        node->constant = Value(true);
      } else if (token.text == "false" || token.text == "False") {
        node->constant = Value(false);
      } else if (token.text == "none" || token.text == "None") {
        node->constant = Value::none();
      } else {
        node->kind = ExprKind::kName;
        node->name = token.text;
      }
      return node;
    }
    case TokenType::kString: {
      // Adjacent string literals concatenate, as in Python.
      std::string text;
      while (current().type == TokenType::kString) text += advance().text;
      auto node = make(ExprKind::kConstant, line);
      node->constant = Value(std::move(text));
      return node;
    }
    case TokenType::kInteger:
    case TokenType::kFloat: {
      auto node = make(ExprKind::kConstant, line);
      node->constant = token.type == TokenType::kInteger ? Value(token.int_value) : Value(token.float_value);
      advance();
      return node;
    }
    case TokenType::kOperator:
      if (token.text == "(") {
        advance();
        auto inner = parse_tuple({}, true, /*explicit_parentheses=*/true);
        if (!inner) return inner;
        if (auto r = expect_op(")"); !r) return std::unexpected(r.error());
        return inner;
      }
      if (token.text == "[") return parse_list();
      if (token.text == "{") return parse_dict();
      break;
    default: break;
  }
  return unexpected();
}

Result<ExprPtr> Parser::parse_tuple(std::initializer_list<std::string_view> extra_end, bool with_condexpr,
                                    bool explicit_parentheses) {
  const int line = current().line;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
    }
    const TokenType type = current().type;
    if (type == TokenType::kVariableEnd || type == TokenType::kBlockEnd || at_op(")") ||
        (type == TokenType::kName && contains(extra_end, current().text))) {
      break;
    }
    auto item = parse_expression(with_condexpr);
    if (!item) return item;
    items.push_back(std::move(*item));
    if (!at_op(",")) break;
    is_tuple = true;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items.front());
    if (!explicit_parentheses) return error(line, "expected an expression, got {}", describe(current()));
  }
  auto node = make(ExprKind::kTuple, line);
  node->operands = std::move(items);
  return node;
}

Result<ExprPtr> Parser::parse_list() {
  const int line = advance().line;
  auto node = make(ExprKind::kList, line);
  while (!at_op("]")) {
    if (!node->operands.empty()) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
      if (at_op("]")) break;
    }
    auto item = parse_expression(true);
    if (!item) return item;
    node->operands.push_back(std::move(*item));
  }
  advance();
  return node;
}

Result<ExprPtr> Parser::parse_dict() {
  const int line = advance().line;
  auto node = make(ExprKind::kDict, line);
  while (!at_op("}")) {
    if (!node->operands.empty()) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
      if (at_op("}")) break;
    }
    auto key = parse_expression(true);
    if (!key) return key;
    if (auto r = expect_op(":"); !r) return std::unexpected(r.error());
    auto value = parse_expression(true);
    if (!value) return value;
    node->operands.push_back(std::move(*key));
    node->operands.push_back(std::move(*value));
  }
  advance();
  return node;
}

Result<ExprPtr> Parser::parse_postfix(ExprPtr node) {
  while (true) {
    if (at_op(".") || at_op("[")) {
      auto r = parse_subscript(std::move(node));
      if (!r) return r;
      node = std::move(*r);
    } else if (at_op("(")) {
      auto r = parse_call(std::move(node));
      if (!r) return r;
      node = std::move(*r);
    } else {
      return node;
    }
  }
}

Result<ExprPtr> Parser::parse_filter_expr(ExprPtr node) {
  while (true) {
    Result<ExprPtr> r;
    if (at_op("|")) {
      r = parse_filter(std::move(node), false);
    } else if (at_name("is")) {
      r = parse_test(std::move(node));
    } else if (at_op("(")) {
      r = parse_call(std::move(node));
    } else {
      return node;
    }
    if (!r) return r;
    node = std::move(*r);
  }
}

Result<ExprPtr> Parser::parse_subscript(ExprPtr subject) {
  const Token& token = advance();
  const int line = token.line;
  if (token.text == ".") {
    const Token& attribute = current();
    if (attribute.type == TokenType::kName) {
      advance();
      auto node = make(ExprKind::kGetAttr, line);
      node->name = attribute.text;
      node->operands.push_back(std::move(subject));
      return node;
    }
    if (attribute.type != TokenType::kInteger) return error(attribute.line, "expected name or number");
    auto index = make(ExprKind::kConstant, attribute.line);
    index->constant = Value(attribute.int_value);
    advance();
    auto node = make(ExprKind::kGetItem, line);
    node->operands.push_back(std::move(subject));
    node->operands.push_back(std::move(index));
    return node;
  }
  // `[`: an index, a slice, or a tuple of indices.
  std::vector<Subscribed> parts;
  while (!at_op("]")) {
    if (!parts.empty()) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
    }
    auto part = parse_subscribed();
    if (!part) return std::unexpected(part.error());
    parts.push_back(std::move(*part));
  }
  advance();  // ']'
  if (parts.empty()) return error(line, "expected subscript expression");
  if (parts.size() == 1 && parts.front().is_slice) {
    auto node = make(ExprKind::kSlice, line);
    node->operands.push_back(std::move(subject));
    for (auto& bound : parts.front().bounds) node->operands.push_back(std::move(bound));
    return node;
  }
  auto node = make(ExprKind::kGetItem, line);
  node->operands.push_back(std::move(subject));
  if (parts.size() == 1) {
    node->operands.push_back(std::move(parts.front().index));
    return node;
  }
  auto tuple = make(ExprKind::kTuple, line);
  for (auto& part : parts) {
    if (part.is_slice) return error(line, "unsupported: tuple of slices");
    tuple->operands.push_back(std::move(part.index));
  }
  node->operands.push_back(std::move(tuple));
  return node;
}

Result<Parser::Subscribed> Parser::parse_subscribed() {
  Subscribed out;
  if (!at_op(":")) {
    auto first = parse_expression(true);
    if (!first) return std::unexpected(first.error());
    if (!at_op(":")) {
      out.index = std::move(*first);
      return out;
    }
    out.bounds[0] = std::move(*first);
  }
  out.is_slice = true;
  advance();  // the first ':'
  auto optional_bound = [&](ExprPtr& bound) -> Result<void> {
    if (at_op(":") || at_op("]") || at_op(",")) return {};
    auto value = parse_expression(true);
    if (!value) return std::unexpected(value.error());
    bound = std::move(*value);
    return {};
  };
  if (auto r = optional_bound(out.bounds[1]); !r) return std::unexpected(r.error());
  if (skip_op(":")) {
    if (auto r = optional_bound(out.bounds[2]); !r) return std::unexpected(r.error());
  }
  return out;
}

Result<void> Parser::parse_call_args(Expr& node) {
  const int line = current().line;
  if (auto r = expect_op("("); !r) return r;
  bool need_comma = false;
  while (!at_op(")")) {
    if (need_comma) {
      if (auto r = expect_op(","); !r) return r;
      if (at_op(")")) break;
    }
    if (at_op("*") || at_op("**")) return error(line, "unsupported: *args / **kwargs in calls");
    if (current().type == TokenType::kName && look().type == TokenType::kOperator && look().text == "=") {
      std::string key = advance().text;
      advance();
      auto value = parse_expression(true);
      if (!value) return std::unexpected(value.error());
      node.keywords.emplace_back(std::move(key), std::move(*value));
    } else {
      if (!node.keywords.empty()) return error(line, "positional argument follows keyword argument");
      auto value = parse_expression(true);
      if (!value) return std::unexpected(value.error());
      node.operands.push_back(std::move(*value));
    }
    need_comma = true;
  }
  advance();
  return {};
}

Result<ExprPtr> Parser::parse_call(ExprPtr callee) {
  auto node = make(ExprKind::kCall, current().line);
  node->operands.push_back(std::move(callee));
  if (auto r = parse_call_args(*node); !r) return std::unexpected(r.error());
  return node;
}

Result<ExprPtr> Parser::parse_filter(ExprPtr subject, bool start_inline) {
  while (at_op("|") || start_inline) {
    if (!start_inline) advance();
    start_inline = false;
    const int line = current().line;
    auto name = expect_name();
    if (!name) return std::unexpected(name.error());
    if (at_op(".")) return error(line, "unsupported filter '{}.{}'", *name, look().text);
    const FilterSpec* spec = find_filter(*name);
    if (spec == nullptr) {
      if (is_unsupported_filter(*name)) return error(line, "unsupported filter '{}'", *name);
      return error(line, "unknown filter '{}'", *name);
    }
    auto node = make(ExprKind::kFilter, line);
    node->name = *name;
    node->filter = spec;
    node->operands.push_back(std::move(subject));
    if (at_op("(")) {
      if (auto r = parse_call_args(*node); !r) return std::unexpected(r.error());
    }
    subject = std::move(node);
  }
  return subject;
}

Result<ExprPtr> Parser::parse_test(ExprPtr subject) {
  const int line = advance().line;  // 'is'
  const bool negated = skip_name("not");
  auto name = expect_name();
  if (!name) return std::unexpected(name.error());
  if (at_op(".")) return error(line, "unsupported test '{}.{}'", *name, look().text);
  const TestSpec* spec = find_test(*name);
  if (spec == nullptr) return error(line, "unknown test '{}'", *name);
  auto node = make(ExprKind::kTest, line);
  node->name = *name;
  node->test = spec;
  node->negated = negated;
  node->operands.push_back(std::move(subject));
  if (at_op("(")) {
    if (auto r = parse_call_args(*node); !r) return std::unexpected(r.error());
  } else {
    // jinja2 allows one argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
    const Token& token = current();
    const bool starts_argument =
        (token.type == TokenType::kName && !contains({"else", "or", "and"}, token.text)) ||
        token.type == TokenType::kString || token.type == TokenType::kInteger || token.type == TokenType::kFloat ||
        (token.type == TokenType::kOperator && (token.text == "(" || token.text == "[" || token.text == "{"));
    if (starts_argument) {
      if (at_name("is")) return error(token.line, "you cannot chain multiple tests with is");
      auto argument = parse_primary();
      if (!argument) return argument;
      auto with_postfix = parse_postfix(std::move(*argument));
      if (!with_postfix) return with_postfix;
      node->operands.push_back(std::move(*with_postfix));
    }
  }
  return node;
}
}  // namespace tern::chat::detail
