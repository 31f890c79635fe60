#pragma once
// The parser's class, shared by parser.cpp (statements) and expression_parser.cpp (expressions).
// Internal to tern_template; the entry point is parse_program() in parser.h.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/template/ast.h"
#include "tokenizer/template/lexer.h"
#include "tokenizer/template/parser.h"
#include "util/result.h"

namespace tern::chat::detail {

/// Deep enough for any real template; shallow enough that recursion cannot overflow the stack.
constexpr int kMaxNesting = 200;

inline bool contains(std::initializer_list<std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

/// Recursive descent over the token list, one method per jinja2 grammar rule.
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
    if (!at_op(op))
      return current().type == TokenType::kEnd
                 ? unexpected_end()
                 : error(current().line, "expected '{}', got {}", op, describe(current()));
    advance();
    return {};
  }
  Result<std::string> expect_name() {
    if (current().type != TokenType::kName) {
      return current().type == TokenType::kEnd ? unexpected_end()
                                               : error(current().line, "expected a name, got {}", describe(current()));
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

  // ---- statements (parser.cpp) ----

  /// Parses text, outputs and statements until a block tag named in `end_names` (left as the current
  /// token) or the end of the template.
  Result<Body> subparse(std::initializer_list<std::string_view> end_names);
  /// After a statement's head: `%}`, the body up to one of `end_names`, and with `drop_end` the end name.
  Result<Body> parse_statements(std::initializer_list<std::string_view> end_names, bool drop_end);
  Result<void> parse_statement(Body& body);
  struct BlockScope {
    BlockScope(Parser& parser, std::string name, int line) : parser_(parser) {
      parser_.open_blocks_.emplace_back(std::move(name), line);
    }
    ~BlockScope() { parser_.open_blocks_.pop_back(); }
    Parser& parser_;
  };
  Result<void> parse_for(Body& body);
  Result<void> parse_if(Body& body);
  Result<void> parse_set(Body& body);
  Result<void> parse_macro(Body& body);
  Result<void> parse_with(Body& body);
  Result<void> parse_filter_block(Body& body);
  Result<void> parse_print(Body& body);
  /// `name`, `a, b`, `(a, b)` or (with `with_namespace`) `ns.attr`.
  Result<AssignTarget> parse_assign_target(std::initializer_list<std::string_view> extra_end, bool with_namespace);

  // ---- expressions (expression_parser.cpp) ----

  Result<ExprPtr> parse_expression(bool with_condexpr);
  Result<ExprPtr> parse_condexpr();
  Result<ExprPtr> parse_or();
  Result<ExprPtr> parse_and();
  Result<ExprPtr> parse_not();
  Result<ExprPtr> parse_compare();
  using SubParser = Result<ExprPtr> (Parser::*)();
  /// Left-associative binary operators over `next`.
  Result<ExprPtr> parse_binary(SubParser next, std::initializer_list<std::pair<std::string_view, Op>> ops);
  Result<ExprPtr> parse_math1() { return parse_binary(&Parser::parse_concat, {{"+", Op::kAdd}, {"-", Op::kSub}}); }
  Result<ExprPtr> parse_concat();
  Result<ExprPtr> parse_math2();
  Result<ExprPtr> parse_pow() { return parse_binary(&Parser::parse_unary_with_filter, {{"**", Op::kPow}}); }
  Result<ExprPtr> parse_unary_with_filter() { return parse_unary(true); }
  Result<ExprPtr> parse_unary(bool with_filter);
  Result<ExprPtr> parse_primary();
  /// Comma-separated expressions: one expression, or a tuple when a comma appears.
  Result<ExprPtr> parse_tuple(std::initializer_list<std::string_view> extra_end, bool with_condexpr = true,
                              bool explicit_parentheses = false);
  Result<ExprPtr> parse_list();
  Result<ExprPtr> parse_dict();
  Result<ExprPtr> parse_postfix(ExprPtr node);
  Result<ExprPtr> parse_filter_expr(ExprPtr node);
  Result<ExprPtr> parse_subscript(ExprPtr subject);
  /// One entry between `[` and `]`: an index expression or a `start:stop:step` slice.
  struct Subscribed {
    bool is_slice = false;
    ExprPtr index;
    std::array<ExprPtr, 3> bounds;  // start, stop, step; null where omitted
  };
  Result<Subscribed> parse_subscribed();
  /// `(args, name=value)` appended to `node` (operands after the first, and keywords).
  Result<void> parse_call_args(Expr& node);
  Result<ExprPtr> parse_call(ExprPtr callee);
  /// `| name(args) | name2 ...`; with `start_inline` the first filter has no leading `|` (filter blocks).
  Result<ExprPtr> parse_filter(ExprPtr subject, bool start_inline);
  Result<ExprPtr> parse_test(ExprPtr subject);

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::pair<std::string, int>> open_blocks_;  // (tag, line) of blocks awaiting their end tag
};

}  // namespace tern::chat::detail
