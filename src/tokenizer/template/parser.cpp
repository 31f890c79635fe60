#include "tokenizer/template/parser.h"

#include <algorithm>
#include <array>
#include <initializer_list>

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/lexer.h"

namespace tern::chat {

namespace {

/// Deep enough for any real template; shallow enough that recursion cannot overflow the stack.
constexpr int kMaxNesting = 200;

bool contains(std::initializer_list<std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

/// jinja2 tags that exist but that chat templates do not need; rejected by name.
bool is_unsupported_tag(std::string_view name) {
  return contains({"block", "extends", "include", "import", "from", "call", "autoescape", "generation", "trans",
                   "pluralize", "do", "debug", "endblock", "endcall", "endautoescape", "endgeneration", "endtrans"},
                  name);
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Result<std::shared_ptr<const Program>> parse() {
    auto program = std::make_shared<Program>();
    auto body = subparse({});
    if (!body) return std::unexpected(body.error());
    program->body = std::move(*body);
    return program;
  }

 private:
  // ---- token stream ----

  const Token& current() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  const Token& advance() {
    const Token& token = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return token;
  }
  bool at_name(std::string_view name) const { return current().type == TokenType::kName && current().text == name; }
  bool at_op(std::string_view op) const { return current().type == TokenType::kOperator && current().text == op; }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    advance();
    return true;
  }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    advance();
    return true;
  }

  template <class... Args>
  std::unexpected<Error> error(int line, fmt::format_string<Args...> format, Args&&... args) const {
    return fail("chat template line {}: {}", line, fmt::format(format, std::forward<Args>(args)...));
  }

  static std::string describe(const Token& token) {
    switch (token.type) {
      case TokenType::kText: return "template text";
      case TokenType::kVariableBegin: return "'{{'";
      case TokenType::kVariableEnd: return "end of print statement '}}'";
      case TokenType::kBlockBegin: return "'{%'";
      case TokenType::kBlockEnd: return "end of statement block '%}'";
      case TokenType::kString: return "string";
      case TokenType::kInteger: return "integer";
      case TokenType::kFloat: return "float";
      case TokenType::kEnd: return "end of template";
      default: return "'" + token.text + "'";
    }
  }

  std::unexpected<Error> unexpected() const {
    if (current().type == TokenType::kEnd) return unexpected_end();
    return error(current().line, "unexpected {}", describe(current()));
  }

  std::unexpected<Error> unexpected_end() const {
    if (open_blocks_.empty()) return error(current().line, "unexpected end of template");
    const auto& [name, line] = open_blocks_.back();
    return error(current().line, "unexpected end of template: the '{}' block opened on line {} is never closed", name,
                 line);
  }

  Result<void> expect(TokenType type) {
    if (current().type != type) return unexpected();
    advance();
    return {};
  }
  Result<void> expect_op(std::string_view op) {
    if (!at_op(op)) return current().type == TokenType::kEnd ? unexpected_end() : error(current().line, "expected '{}', got {}", op, describe(current()));
    advance();
    return {};
  }
  Result<std::string> expect_name() {
    if (current().type != TokenType::kName) {
      return current().type == TokenType::kEnd ? unexpected_end() : error(current().line, "expected a name, got {}", describe(current()));
    }
    return advance().text;
  }

  static ExprPtr make(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  /// Guards recursion depth; every recursive descent holds one of these.
  struct DepthGuard {
    explicit DepthGuard(int& depth) : depth_(depth) { ++depth_; }
    ~DepthGuard() { --depth_; }
    int& depth_;
  };
  Result<void> check_depth(int line) const {
    if (depth_ > kMaxNesting) return error(line, "template nested more than {} levels deep", kMaxNesting);
    return {};
  }

  // ---- statements ----

  /// Parses text, outputs and statements until a block tag named in `end_names` (left as the current
  /// token) or the end of the template.
  Result<Body> subparse(std::initializer_list<std::string_view> end_names) {
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

  /// After a statement's head: `%}`, the body up to one of `end_names`, and with `drop_end` the end name.
  Result<Body> parse_statements(std::initializer_list<std::string_view> end_names, bool drop_end) {
    if (auto r = expect(TokenType::kBlockEnd); !r) return std::unexpected(r.error());
    auto body = subparse(end_names);
    if (!body) return body;
    if (drop_end) advance();
    return body;
  }

  Result<void> parse_statement(Body& body) {
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

  struct BlockScope {
    BlockScope(Parser& parser, std::string name, int line) : parser_(parser) {
      parser_.open_blocks_.emplace_back(std::move(name), line);
    }
    ~BlockScope() { parser_.open_blocks_.pop_back(); }
    Parser& parser_;
  };

  Result<void> parse_for(Body& body) {
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

  Result<void> parse_if(Body& body) {
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

  Result<void> parse_set(Body& body) {
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

  Result<void> parse_macro(Body& body) {
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
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = StmtKind::kMacro;
    stmt->line = line;
    stmt->macro = std::move(macro);
    body.push_back(std::move(stmt));
    return {};
  }

  Result<void> parse_with(Body& body) {
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

  Result<void> parse_filter_block(Body& body) {
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

  Result<void> parse_print(Body& body) {
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

  /// `name`, `a, b`, `(a, b)` or (with `with_namespace`) `ns.attr`.
  Result<AssignTarget> parse_assign_target(std::initializer_list<std::string_view> extra_end, bool with_namespace) {
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

  // ---- expressions ----

  Result<ExprPtr> parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  Result<ExprPtr> parse_condexpr() {
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

  Result<ExprPtr> parse_or() {
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

  Result<ExprPtr> parse_and() {
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

  Result<ExprPtr> parse_not() {
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

  Result<ExprPtr> parse_compare() {
    const int line = current().line;
    auto first = parse_math1();
    if (!first) return first;
    ExprPtr node;
    while (true) {
      Op op;
      if (at_op("==")) op = Op::kEq;
      else if (at_op("!=")) op = Op::kNe;
      else if (at_op("<")) op = Op::kLt;
      else if (at_op("<=")) op = Op::kLe;
      else if (at_op(">")) op = Op::kGt;
      else if (at_op(">=")) op = Op::kGe;
      else if (at_name("in")) op = Op::kIn;
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

  using SubParser = Result<ExprPtr> (Parser::*)();

  /// Left-associative binary operators over `next`.
  Result<ExprPtr> parse_binary(SubParser next, std::initializer_list<std::pair<std::string_view, Op>> ops) {
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

  Result<ExprPtr> parse_math1() { return parse_binary(&Parser::parse_concat, {{"+", Op::kAdd}, {"-", Op::kSub}}); }

  Result<ExprPtr> parse_concat() {
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

  Result<ExprPtr> parse_math2() {
    return parse_binary(&Parser::parse_pow,
                        {{"*", Op::kMul}, {"/", Op::kDiv}, {"//", Op::kFloorDiv}, {"%", Op::kMod}});
  }

  Result<ExprPtr> parse_pow() { return parse_binary(&Parser::parse_unary_with_filter, {{"**", Op::kPow}}); }

  Result<ExprPtr> parse_unary_with_filter() { return parse_unary(true); }

  Result<ExprPtr> parse_unary(bool with_filter) {
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

  Result<ExprPtr> parse_primary() {
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

  /// Comma-separated expressions: one expression, or a tuple when a comma appears.
  Result<ExprPtr> parse_tuple(std::initializer_list<std::string_view> extra_end, bool with_condexpr = true,
                              bool explicit_parentheses = false) {
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

  Result<ExprPtr> parse_list() {
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

  Result<ExprPtr> parse_dict() {
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

  Result<ExprPtr> parse_postfix(ExprPtr node) {
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

  Result<ExprPtr> parse_filter_expr(ExprPtr node) {
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

  Result<ExprPtr> parse_subscript(ExprPtr subject) {
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

  /// One entry between `[` and `]`: an index expression or a `start:stop:step` slice.
  struct Subscribed {
    bool is_slice = false;
    ExprPtr index;
    std::array<ExprPtr, 3> bounds;  // start, stop, step; null where omitted
  };

  Result<Subscribed> parse_subscribed() {
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

  /// `(args, name=value)` appended to `node` (operands after the first, and keywords).
  Result<void> parse_call_args(Expr& node) {
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

  Result<ExprPtr> parse_call(ExprPtr callee) {
    auto node = make(ExprKind::kCall, current().line);
    node->operands.push_back(std::move(callee));
    if (auto r = parse_call_args(*node); !r) return std::unexpected(r.error());
    return node;
  }

  /// `| name(args) | name2 ...`; with `start_inline` the first filter has no leading `|` (filter blocks).
  Result<ExprPtr> parse_filter(ExprPtr subject, bool start_inline) {
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

  Result<ExprPtr> parse_test(ExprPtr subject) {
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

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::pair<std::string, int>> open_blocks_;  // (tag, line) of blocks awaiting their end tag
};

}  // namespace

Result<std::shared_ptr<const Program>> parse_program(std::string_view source) {
  auto tokens = tokenize(source);
  if (!tokens) return std::unexpected(tokens.error());
  return Parser(std::move(*tokens)).parse();
}

}  // namespace tern::chat
