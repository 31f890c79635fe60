#pragma once
// The parsed form of a chat template. Node shapes follow jinja2's own (jinja2/nodes.py) so that the
// evaluator can mirror jinja2's generated code construct by construct. Every node carries the template
// line it came from; runtime errors name it.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/template/value.h"

namespace tern::chat {

struct FilterSpec;
struct TestSpec;

enum class ExprKind {
  kConstant,   ///< `constant`
  kName,       ///< variable `name`
  kList,       ///< [operands...]
  kTuple,      ///< (operands...)
  kDict,       ///< {operands[0]: operands[1], operands[2]: operands[3], ...}
  kGetAttr,    ///< operands[0].name
  kGetItem,    ///< operands[0][operands[1]]
  kSlice,      ///< operands[0][operands[1]:operands[2]:operands[3]]; missing parts are null
  kCall,       ///< operands[0](operands[1...], keywords...)
  kFilter,     ///< operands[0] | name(operands[1...], keywords...); operands[0] null = the enclosing block's output
  kTest,       ///< operands[0] is [not] name(operands[1...], keywords...)
  kUnary,      ///< op operands[0], op one of kNot, kNeg, kPos
  kBinary,     ///< operands[0] op operands[1], op arithmetic
  kConcat,     ///< operands[0] ~ operands[1] ~ ...
  kAnd,        ///< operands[0] and operands[1]
  kOr,         ///< operands[0] or operands[1]
  kCompare,    ///< operands[0] compare_ops[0] operands[1] compare_ops[1] operands[2] ...
  kCondition,  ///< operands[0] if operands[1] else operands[2] (operands[2] null: undefined)
};

enum class Op {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kFloorDiv,
  kMod,
  kPow,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kNotIn,
  kNot,
  kNeg,
  kPos
};

struct Expr {
  ExprKind kind = ExprKind::kConstant;
  int line = 0;
  Value constant;
  std::string name;
  Op op = Op::kAdd;
  bool negated = false;                ///< kTest: `is not`
  const FilterSpec* filter = nullptr;  ///< kFilter, resolved at parse time
  const TestSpec* test = nullptr;      ///< kTest, resolved at parse time
  std::vector<std::unique_ptr<Expr>> operands;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> keywords;
  std::vector<Op> compare_ops;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

/// Left side of `set` and `for`: one name, a flat tuple of names, or `namespace.attribute`.
struct AssignTarget {
  std::vector<std::string> names;
  bool is_tuple = false;
  std::string attribute;  ///< non-empty for `{% set ns.attribute = ... %}`
};

struct MacroDef {
  std::string name;
  int line = 0;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  ///< defaults of the last defaults.size() params
  Body body;
};

enum class StmtKind {
  kText,      ///< text
  kOutput,    ///< {{ expr }}
  kIf,        ///< conditions[i] -> bodies[i]; bodies may hold one more (the else)
  kFor,       ///< for target in expr [if loop_filter] body [else else_body]
  kSet,       ///< set target = expr
  kSetBlock,  ///< set target [| filter] body endset; expr is the filter chain or null
  kMacro,     ///< macro definition
  kBreak,
  kContinue,
  kWith,         ///< with name = value, ... body endwith
  kFilterBlock,  ///< filter expr body endfilter
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 0;
  std::string text;
  ExprPtr expr;
  AssignTarget target;
  ExprPtr loop_filter;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  std::shared_ptr<MacroDef> macro;
  std::vector<std::pair<std::string, ExprPtr>> assignments;  ///< kWith
};

}  // namespace tern::chat
