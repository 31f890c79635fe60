#include "tokenizer/template/parser.h"

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/parser_internal.h"

namespace tern::chat {

namespace detail {

namespace {

/// jinja2 tags that exist but that chat templates do not need; rejected by name.
bool is_unsupported_tag(std::string_view name) {
  return contains({"block", "extends", "include", "import", "from", "call", "autoescape", "generation", "trans",
                   "pluralize", "do", "debug", "endblock", "endcall", "endautoescape", "endgeneration", "endtrans"},
                  name);
}

bool expression_mentions(const Expr* expr, std::initializer_list<std::string_view> names);

bool body_mentions(const Body& body, std::initializer_list<std::string_view> names) {
  for (const StmtPtr& stmt : body) {
    if (expression_mentions(stmt->expr.get(), names) || expression_mentions(stmt->loop_filter.get(), names)) {
      return true;
    }
    for (const ExprPtr& condition : stmt->conditions) {
      if (expression_mentions(condition.get(), names)) return true;
    }
    for (const Body& branch : stmt->bodies) {
      if (body_mentions(branch, names)) return true;
    }
    for (const auto& [name, value] : stmt->assignments) {
      if (expression_mentions(value.get(), names)) return true;
    }
    if (body_mentions(stmt->body, names) || body_mentions(stmt->else_body, names)) return true;
  }
  return false;
}

/// Whether `expr` reads any of `names` as a variable.
bool expression_mentions(const Expr* expr, std::initializer_list<std::string_view> names) {
  if (expr == nullptr) return false;
  if (expr->kind == ExprKind::kName && contains(names, expr->name)) return true;
  for (const ExprPtr& operand : expr->operands) {
    if (expression_mentions(operand.get(), names)) return true;
  }
  for (const auto& [key, value] : expr->keywords) {
    if (expression_mentions(value.get(), names)) return true;
  }
  return false;
}

}  // namespace

Result<Body> Parser::subparse(std::initializer_list<std::string_view> end_names) {
  DepthGuard guard(depth_);
  if (auto r = check_depth(current().line); !r) return std::unexpected(r.error());
  Body body;
  while (current().type != TokenType::kEnd) {
    const Token& token = current();
    if (token.type == TokenType::kText) {
      auto stmt = std::make_unique<Stmt>();
      stmt->kind = StmtKind::kText;
      stmt->line = token.line;
      stmt->text = token.text;
      body.push_back(std::move(stmt));
      advance();
    } else if (token.type == TokenType::kVariableBegin) {
      advance();
      auto stmt = std::make_unique<Stmt>();
      stmt->kind = StmtKind::kOutput;
      stmt->line = token.line;
      auto expr = parse_tuple({});
      if (!expr) return std::unexpected(expr.error());
      stmt->expr = std::move(*expr);
      if (auto r = expect(TokenType::kVariableEnd); !r) return std::unexpected(r.error());
      body.push_back(std::move(stmt));
    } else if (token.type == TokenType::kBlockBegin) {
      advance();
      if (current().type == TokenType::kName && contains(end_names, current().text)) return body;
      auto r = parse_statement(body);
      if (!r) return std::unexpected(r.error());
      if (auto end = expect(TokenType::kBlockEnd); !end) return std::unexpected(end.error());
    } else {
      return unexpected();
    }
  }
  if (end_names.size() > 0) return unexpected_end();
  return body;
}

Result<Body> Parser::parse_statements(std::initializer_list<std::string_view> end_names, bool drop_end) {
  if (auto r = expect(TokenType::kBlockEnd); !r) return std::unexpected(r.error());
  auto body = subparse(end_names);
  if (!body) return body;
  if (drop_end) advance();
  return body;
}

Result<void> Parser::parse_statement(Body& body) {
  if (current().type != TokenType::kName) return error(current().line, "tag name expected");
  const std::string tag = current().text;
  const int line = current().line;
  if (tag == "for") return parse_for(body);
  if (tag == "if") return parse_if(body);
  if (tag == "set") return parse_set(body);
  if (tag == "macro") return parse_macro(body);
  if (tag == "with") return parse_with(body);
  if (tag == "filter") return parse_filter_block(body);
  if (tag == "print") return parse_print(body);
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) return error(line, "'{}' is only allowed inside a loop", tag);
    advance();
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    stmt->line = line;
    body.push_back(std::move(stmt));
    return {};
  }
  if (is_unsupported_tag(tag)) return error(line, "unsupported tag '{}'", tag);
  if (!open_blocks_.empty()) {
    return error(line, "unexpected tag '{}' inside the '{}' block opened on line {}", tag, open_blocks_.back().first,
                 open_blocks_.back().second);
  }
  return error(line, "unknown tag '{}'", tag);
}

Result<void> Parser::parse_for(Body& body) {
  const int line = advance().line;
  BlockScope scope(*this, "for", line);
  auto stmt = std::make_unique<Stmt>();
  stmt->kind = StmtKind::kFor;
  stmt->line = line;
  auto target = parse_assign_target({"in"}, false);
  if (!target) return std::unexpected(target.error());
  stmt->target = std::move(*target);
  if (!skip_name("in")) return error(current().line, "expected 'in', got {}", describe(current()));
  auto iterable = parse_tuple({"recursive"}, /*with_condexpr=*/false);
  if (!iterable) return std::unexpected(iterable.error());
  stmt->expr = std::move(*iterable);
  if (skip_name("if")) {
    auto filter = parse_expression(true);
    if (!filter) return std::unexpected(filter.error());
    stmt->loop_filter = std::move(*filter);
  }
  if (at_name("recursive")) return error(current().line, "unsupported: recursive for loops");
  ++loop_depth_;
  auto loop_body = parse_statements({"endfor", "else"}, false);
  --loop_depth_;
  if (!loop_body) return std::unexpected(loop_body.error());
  stmt->body = std::move(*loop_body);
  if (advance().text == "else") {
    auto else_body = parse_statements({"endfor"}, true);
    if (!else_body) return std::unexpected(else_body.error());
    stmt->else_body = std::move(*else_body);
  }
  body.push_back(std::move(stmt));
  return {};
}

Result<void> Parser::parse_if(Body& body) {
  const int line = advance().line;
  BlockScope scope(*this, "if", line);
  auto stmt = std::make_unique<Stmt>();
  stmt->kind = StmtKind::kIf;
  stmt->line = line;
  while (true) {
    auto test = parse_tuple({}, /*with_condexpr=*/false);
    if (!test) return std::unexpected(test.error());
    stmt->conditions.push_back(std::move(*test));
    auto branch = parse_statements({"elif", "else", "endif"}, false);
    if (!branch) return std::unexpected(branch.error());
    stmt->bodies.push_back(std::move(*branch));
    const std::string end = advance().text;
    if (end == "elif") continue;
    if (end == "else") {
      auto else_body = parse_statements({"endif"}, true);
      if (!else_body) return std::unexpected(else_body.error());
      stmt->bodies.push_back(std::move(*else_body));
    }
    break;
  }
  body.push_back(std::move(stmt));
  return {};
}

Result<void> Parser::parse_set(Body& body) {
  const int line = advance().line;
  auto stmt = std::make_unique<Stmt>();
  stmt->line = line;
  auto target = parse_assign_target({}, true);
  if (!target) return std::unexpected(target.error());
  stmt->target = std::move(*target);
  if (skip_op("=")) {
    stmt->kind = StmtKind::kSet;
    auto value = parse_tuple({});
    if (!value) return std::unexpected(value.error());
    stmt->expr = std::move(*value);
    body.push_back(std::move(stmt));
    return {};
  }
  BlockScope scope(*this, "set", line);
  stmt->kind = StmtKind::kSetBlock;
  if (at_op("|")) {
    auto filter = parse_filter(nullptr, false);
    if (!filter) return std::unexpected(filter.error());
    stmt->expr = std::move(*filter);
  }
  auto set_body = parse_statements({"endset"}, true);
  if (!set_body) return std::unexpected(set_body.error());
  stmt->body = std::move(*set_body);
  body.push_back(std::move(stmt));
  return {};
}

Result<void> Parser::parse_macro(Body& body) {
  const int line = advance().line;
  BlockScope scope(*this, "macro", line);
  auto macro = std::make_shared<MacroDef>();
  macro->line = line;
  auto name = expect_name();
  if (!name) return std::unexpected(name.error());
  macro->name = *name;
  if (auto r = expect_op("("); !r) return std::unexpected(r.error());
  while (!at_op(")")) {
    if (!macro->params.empty()) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
    }
    auto param = expect_name();
    if (!param) return std::unexpected(param.error());
    macro->params.push_back(*param);
    if (skip_op("=")) {
      auto value = parse_expression(true);
      if (!value) return std::unexpected(value.error());
      macro->defaults.push_back(std::move(*value));
    } else if (!macro->defaults.empty()) {
      return error(current().line, "non-default argument follows default argument");
    }
  }
  advance();
  // break/continue inside a macro body do not belong to an enclosing loop.
  const int saved_loop_depth = std::exchange(loop_depth_, 0);
  auto macro_body = parse_statements({"endmacro"}, true);
  loop_depth_ = saved_loop_depth;
  if (!macro_body) return std::unexpected(macro_body.error());
  macro->body = std::move(*macro_body);
  // Inside a macro these names are jinja2's implicit varargs/kwargs/caller; they are not supported,
  // and treating them as ordinary (undefined) variables would render differently.
  if (body_mentions(macro->body, {"varargs", "kwargs", "caller"})) {
    return error(line, "unsupported: macro '{}' uses varargs, kwargs or caller", macro->name);
  }
  auto stmt = std::make_unique<Stmt>();
  stmt->kind = StmtKind::kMacro;
  stmt->line = line;
  stmt->macro = std::move(macro);
  body.push_back(std::move(stmt));
  return {};
}

Result<void> Parser::parse_with(Body& body) {
  const int line = advance().line;
  BlockScope scope(*this, "with", line);
  auto stmt = std::make_unique<Stmt>();
  stmt->kind = StmtKind::kWith;
  stmt->line = line;
  while (current().type != TokenType::kBlockEnd) {
    if (!stmt->assignments.empty()) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
    }
    auto name = expect_name();
    if (!name) return std::unexpected(name.error());
    if (auto r = expect_op("="); !r) return std::unexpected(r.error());
    auto value = parse_expression(true);
    if (!value) return std::unexpected(value.error());
    stmt->assignments.emplace_back(*name, std::move(*value));
  }
  auto with_body = parse_statements({"endwith"}, true);
  if (!with_body) return std::unexpected(with_body.error());
  stmt->body = std::move(*with_body);
  body.push_back(std::move(stmt));
  return {};
}

Result<void> Parser::parse_filter_block(Body& body) {
  const int line = advance().line;
  BlockScope scope(*this, "filter", line);
  auto stmt = std::make_unique<Stmt>();
  stmt->kind = StmtKind::kFilterBlock;
  stmt->line = line;
  auto filter = parse_filter(nullptr, true);
  if (!filter) return std::unexpected(filter.error());
  stmt->expr = std::move(*filter);
  auto filter_body = parse_statements({"endfilter"}, true);
  if (!filter_body) return std::unexpected(filter_body.error());
  stmt->body = std::move(*filter_body);
  body.push_back(std::move(stmt));
  return {};
}

Result<void> Parser::parse_print(Body& body) {
  const int line = advance().line;
  bool first = true;
  while (current().type != TokenType::kBlockEnd) {
    if (!first) {
      if (auto r = expect_op(","); !r) return std::unexpected(r.error());
    }
    first = false;
    auto value = parse_expression(true);
    if (!value) return std::unexpected(value.error());
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = StmtKind::kOutput;
    stmt->line = line;
    stmt->expr = std::move(*value);
    body.push_back(std::move(stmt));
  }
  return {};
}

Result<AssignTarget> Parser::parse_assign_target(std::initializer_list<std::string_view> extra_end,
                                                 bool with_namespace) {
  AssignTarget target;
  const int line = current().line;
  const bool parenthesized = skip_op("(");
  while (true) {
    if (!target.names.empty()) {
      if (!skip_op(",")) break;
      target.is_tuple = true;
      if (current().type == TokenType::kBlockEnd || at_op(")") ||
          (current().type == TokenType::kName && contains(extra_end, current().text))) {
        break;
      }
    }
    if (at_op("(")) return error(current().line, "unsupported: nested tuple unpacking");
    auto name = expect_name();
    if (!name) return std::unexpected(name.error());
    if (contains({"true", "false", "none", "True", "False", "None"}, *name)) {
      return error(line, "can't assign to a constant");
    }
    target.names.push_back(*name);
    if (with_namespace && at_op(".")) {
      advance();
      auto attribute = expect_name();
      if (!attribute) return std::unexpected(attribute.error());
      target.attribute = *attribute;
      if (at_op(",")) return error(current().line, "unsupported: namespace attribute in a tuple assignment");
      break;
    }
  }
  if (parenthesized) {
    if (auto r = expect_op(")"); !r) return std::unexpected(r.error());
    target.is_tuple = target.is_tuple || target.names.size() > 1;
  }
  return target;
}
}  // namespace detail

Result<std::shared_ptr<const Program>> parse_program(std::string_view source) {
  auto tokens = tokenize(source);
  if (!tokens) return std::unexpected(tokens.error());
  return detail::Parser(std::move(*tokens)).parse();
}

}  // namespace tern::chat
