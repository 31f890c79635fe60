#include "tokenizer/template/evaluator.h"

#include <fmt/format.h>

#include <ctime>
#include <unordered_map>

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/operators.h"

namespace tern::chat {

namespace {

constexpr std::string_view kLinePrefix = "chat template line ";

/// Prefixes the template line unless a deeper node already did (errors surface from the innermost
/// node that knows its line; builtins return bare messages).
Error at_line(int line, const Error& error) {
  if (error.message.starts_with(kLinePrefix)) return error;
  return Error{fmt::format("{}{}: {}", kLinePrefix, line, error.message)};
}

#define TERN_TMPL_CAT2(a, b) a##b
#define TERN_TMPL_CAT(a, b) TERN_TMPL_CAT2(a, b)
/// `TRY_AT(Value v, expr, line);` declares v from a Result or returns its error located at `line`.
#define TRY_AT(decl, expr, line)                                                           \
  auto TERN_TMPL_CAT(try_result_, __LINE__) = (expr);                                      \
  if (!TERN_TMPL_CAT(try_result_, __LINE__)) {                                             \
    return std::unexpected(at_line((line), TERN_TMPL_CAT(try_result_, __LINE__).error())); \
  }                                                                                        \
  decl = std::move(*TERN_TMPL_CAT(try_result_, __LINE__))
/// `CHECK_AT(expr, line);` for Result<void>.
#define CHECK_AT(expr, line)                                                                       \
  if (auto TERN_TMPL_CAT(try_status_, __LINE__) = (expr); !TERN_TMPL_CAT(try_status_, __LINE__)) { \
    return std::unexpected(at_line((line), TERN_TMPL_CAT(try_status_, __LINE__).error()));         \
  }

/// Variables visible at one point of the template; lookups walk to the parents.
struct Scope {
  Scope* parent = nullptr;
  std::unordered_map<std::string, Value> vars;

  const Value* find(const std::string& name) const {
    for (const Scope* scope = this; scope != nullptr; scope = scope->parent) {
      if (auto it = scope->vars.find(name); it != scope->vars.end()) return &it->second;
    }
    return nullptr;
  }
};

enum class Flow { kNormal, kBreak, kContinue };

class Evaluator {
 public:
  explicit Evaluator(const RenderOptions& options) : options_(options), state_(options) {}

  Result<std::string> run(const Program& program, const Value& context) {
    install_globals();
    Scope root{&globals_, {}};
    root_ = &root;
    if (context.is_dict()) {
      for (const auto& [key, value] : context.dict().entries) {
        if (key.is_string()) root.vars[key.text()] = value;
      }
    }
    std::string out;
    out_ = &out;
    auto flow = exec_body(program.body, root);
    if (!flow) return std::unexpected(flow.error());
    return out;
  }

 private:
  // ---- globals HF installs: raise_exception, strftime_now; and jinja2's namespace, range, dict ----

  void install_globals() {
    globals_.vars["raise_exception"] = Value::function("raise_exception", [](CallArgs& args) -> Result<Value> {
      auto text = args.positional.empty() ? Result<std::string>(std::string()) : to_str(args.positional[0]);
      if (!text) return std::unexpected(text.error());
      return fail("{}", *text);
    });
    globals_.vars["strftime_now"] = Value::function("strftime_now", [this](CallArgs& args) -> Result<Value> {
      static const Param kParams[] = {{"format", Value(), true}};
      auto bound = bind_args("strftime_now", args, kParams);
      if (!bound) return std::unexpected(bound.error());
      if (!(*bound)[0].is_string()) return fail("strftime() argument 1 must be str, not {}", type_name((*bound)[0]));
      return strftime_now((*bound)[0].text());
    });
    globals_.vars["namespace"] = Value::function("namespace", [](CallArgs& args) -> Result<Value> {
      DictData attributes;
      if (args.positional.size() > 1) return fail("namespace expected at most 1 positional argument");
      if (args.positional.size() == 1) {
        if (!args.positional[0].is_dict()) return fail("namespace() positional argument must be a dict");
        attributes = args.positional[0].dict();
      }
      for (auto& [key, value] : args.keywords) attributes.set(Value(key), std::move(value));
      return Value::make_namespace(std::move(attributes));
    });
    globals_.vars["dict"] = Value::function("dict", [](CallArgs& args) -> Result<Value> {
      DictData dict;
      if (args.positional.size() > 1) return fail("dict expected at most 1 argument");
      if (args.positional.size() == 1) {
        if (!args.positional[0].is_dict()) return fail("dict() positional argument must be a dict");
        dict = args.positional[0].dict();
      }
      for (auto& [key, value] : args.keywords) dict.set(Value(key), std::move(value));
      return Value::dict(std::move(dict));
    });
    globals_.vars["range"] = Value::function("range", [](CallArgs& args) -> Result<Value> { return range(args); });
    // jinja2's other default globals exist (so `is defined` matches) but are not implemented.
    for (const char* name : {"lipsum", "cycler", "joiner"}) {
      globals_.vars[name] =
          Value::function(name, [name](CallArgs&) -> Result<Value> { return fail("{}() is not supported", name); });
    }
  }

  Result<Value> strftime_now(const std::string& format) const {
    std::tm tm{};
    if (options_.now) {
      const std::time_t t = options_.now->time_since_epoch().count();
      gmtime_r(&t, &tm);
    } else {
      const std::time_t t = std::time(nullptr);
      localtime_r(&t, &tm);
    }
    std::string buffer(256 + format.size() * 8, '\0');
    const size_t n = std::strftime(buffer.data(), buffer.size(), format.c_str(), &tm);
    buffer.resize(n);
    return Value(std::move(buffer));
  }

  /// jinja2's sandboxed range(): a list, refused past 100000 items like the sandbox's MAX_RANGE.
  static Result<Value> range(CallArgs& args) {
    if (!args.keywords.empty()) return fail("range() takes no keyword arguments");
    const auto& p = args.positional;
    if (p.empty() || p.size() > 3) return fail("range expected 1 to 3 arguments, got {}", p.size());
    for (const Value& v : p) {
      if (!v.is_int() && !v.is_bool()) return fail("'{}' object cannot be interpreted as an integer", type_name(v));
    }
    int64_t start = 0, stop = 0, step = 1;
    if (p.size() == 1) {
      stop = p[0].as_int();
    } else {
      start = p[0].as_int();
      stop = p[1].as_int();
      if (p.size() == 3) step = p[2].as_int();
    }
    if (step == 0) return fail("range() arg 3 must not be zero");
    // Unsigned arithmetic gives the exact span for any int64 bounds.
    uint64_t count = 0;
    if (step > 0 ? start < stop : start > stop) {
      const uint64_t span = step > 0 ? static_cast<uint64_t>(stop) - static_cast<uint64_t>(start)
                                     : static_cast<uint64_t>(start) - static_cast<uint64_t>(stop);
      const uint64_t stride = step > 0 ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
      count = (span - 1) / stride + 1;
    }
    if (count > 100000) return fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    ValueList items;
    items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) items.emplace_back(start + static_cast<int64_t>(i) * step);
    return Value::list(std::move(items));
  }

  // ---- output ----

  Result<void> emit(std::string_view text) {
    if (out_->size() + text.size() > options_.limits.max_output_bytes) {
      return fail("rendered output exceeds the {}-byte limit", options_.limits.max_output_bytes);
    }
    if (auto r = state_.charge_bytes(text.size()); !r) return r;
    out_->append(text);
    return {};
  }

  /// Runs `body` with its output captured into a string (macros, set blocks, filter blocks).
  Result<std::string> capture(const Body& body, Scope& scope) {
    std::string buffer;
    std::string* saved = std::exchange(out_, &buffer);
    auto flow = exec_body(body, scope);
    out_ = saved;
    if (!flow) return std::unexpected(flow.error());
    return buffer;
  }

  // ---- statements ----

  Result<Flow> exec_body(const Body& body, Scope& scope) {
    for (const StmtPtr& stmt : body) {
      auto flow = exec(*stmt, scope);
      if (!flow || *flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Result<Flow> exec(const Stmt& stmt, Scope& scope) {
    switch (stmt.kind) {
      case StmtKind::kText: {
        CHECK_AT(emit(stmt.text), stmt.line);
        return Flow::kNormal;
      }
      case StmtKind::kOutput: {
        TRY_AT(Value value, eval(*stmt.expr, scope), stmt.line);
        TRY_AT(std::string text, to_str(value), stmt.expr->line);
        CHECK_AT(emit(text), stmt.line);
        return Flow::kNormal;
      }
      case StmtKind::kIf:
        for (size_t i = 0; i < stmt.conditions.size(); ++i) {
          TRY_AT(Value test, eval(*stmt.conditions[i], scope), stmt.line);
          if (truthy(test)) return exec_body(stmt.bodies[i], scope);
        }
        if (stmt.bodies.size() > stmt.conditions.size()) return exec_body(stmt.bodies.back(), scope);
        return Flow::kNormal;
      case StmtKind::kFor: return exec_for(stmt, scope);
      case StmtKind::kSet: {
        TRY_AT(Value value, eval(*stmt.expr, scope), stmt.line);
        CHECK_AT(assign(stmt.target, std::move(value), scope), stmt.line);
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock: {
        TRY_AT(std::string text, capture(stmt.body, scope), stmt.line);
        Value value(std::move(text));
        if (stmt.expr) {
          TRY_AT(Value filtered, eval_with_block_input(*stmt.expr, scope, value), stmt.line);
          value = std::move(filtered);
        }
        CHECK_AT(assign(stmt.target, std::move(value), scope), stmt.line);
        return Flow::kNormal;
      }
      case StmtKind::kFilterBlock: {
        TRY_AT(std::string text, capture(stmt.body, scope), stmt.line);
        TRY_AT(Value filtered, eval_with_block_input(*stmt.expr, scope, Value(std::move(text))), stmt.line);
        TRY_AT(std::string out, to_str(filtered), stmt.line);
        CHECK_AT(emit(out), stmt.line);
        return Flow::kNormal;
      }
      case StmtKind::kMacro: {
        const std::shared_ptr<MacroDef> macro = stmt.macro;
        scope.vars[macro->name] = Value::function(
            macro->name, [this, macro](CallArgs& args) -> Result<Value> { return call_macro(*macro, args); });
        return Flow::kNormal;
      }
      case StmtKind::kWith: {
        Scope inner{&scope, {}};
        for (const auto& [name, expr] : stmt.assignments) {
          TRY_AT(Value value, eval(*expr, scope), stmt.line);
          inner.vars[name] = std::move(value);
        }
        return exec_body(stmt.body, inner);
      }
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  Result<Flow> exec_for(const Stmt& stmt, Scope& scope) {
    TRY_AT(Value iterable, eval(*stmt.expr, scope), stmt.line);
    TRY_AT(ValueList items, iterate(iterable), stmt.line);
    if (stmt.loop_filter) {
      // `for x in xs if cond`: jinja2 filters first, so loop.index/length/last count kept items only.
      ValueList kept;
      for (Value& item : items) {
        CHECK_AT(state_.charge_iteration(), stmt.line);
        Scope filter_scope{&scope, {}};
        CHECK_AT(assign(stmt.target, item, filter_scope), stmt.line);
        TRY_AT(Value keep, eval(*stmt.loop_filter, filter_scope), stmt.line);
        if (truthy(keep)) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Scope else_scope{&scope, {}};
      return exec_body(stmt.else_body, else_scope);
    }
    auto shared = std::make_shared<const ValueList>(std::move(items));
    for (size_t i = 0; i < shared->size(); ++i) {
      CHECK_AT(state_.charge_iteration(), stmt.line);
      Scope iteration{&scope, {}};
      CHECK_AT(assign(stmt.target, (*shared)[i], iteration), stmt.line);
      iteration.vars["loop"] = Value::loop(shared, i);
      auto flow = exec_body(stmt.body, iteration);
      if (!flow) return flow;
      if (*flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Result<void> assign(const AssignTarget& target, Value value, Scope& scope) {
    if (!target.attribute.empty()) {
      const Value* object = scope.find(target.names[0]);
      if (object == nullptr || !object->is_namespace()) return fail("cannot assign attribute on non-namespace object");
      object->namespace_attributes().set(Value(target.attribute), std::move(value));
      return {};
    }
    if (!target.is_tuple) {
      scope.vars[target.names[0]] = std::move(value);
      return {};
    }
    auto items = iterate(value);
    if (!items) return std::unexpected(items.error());
    const size_t expected = target.names.size();
    if (items->size() < expected) {
      return fail("not enough values to unpack (expected {}, got {})", expected, items->size());
    }
    if (items->size() > expected) return fail("too many values to unpack (expected {})", expected);
    for (size_t i = 0; i < expected; ++i) scope.vars[target.names[i]] = std::move((*items)[i]);
    return {};
  }

  Result<Value> call_macro(const MacroDef& macro, CallArgs& args) {
    if (call_depth_ >= options_.limits.max_call_depth) {
      return fail("macro calls nested deeper than {} (recursion limit)", options_.limits.max_call_depth);
    }
    if (auto r = state_.charge_iteration(); !r) return std::unexpected(r.error());
    if (args.positional.size() > macro.params.size()) {
      return fail("macro '{}' takes not more than {} argument(s)", macro.name, macro.params.size());
    }
    // Macros see the template's top-level variables as they are at call time, as in jinja2.
    Scope frame{root_, {}};
    std::vector<bool> given(macro.params.size(), false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
      frame.vars[macro.params[i]] = std::move(args.positional[i]);
      given[i] = true;
    }
    for (auto& [key, value] : args.keywords) {
      auto it = std::find(macro.params.begin(), macro.params.end(), key);
      if (it == macro.params.end()) return fail("macro '{}' takes no keyword argument '{}'", macro.name, key);
      const size_t index = static_cast<size_t>(it - macro.params.begin());
      if (given[index]) return fail("macro '{}' got multiple values for argument '{}'", macro.name, key);
      frame.vars[key] = std::move(value);
      given[index] = true;
    }
    const size_t first_default = macro.params.size() - macro.defaults.size();
    for (size_t i = 0; i < macro.params.size(); ++i) {
      if (given[i]) continue;
      if (i >= first_default) {
        auto value = eval(*macro.defaults[i - first_default], frame);
        if (!value) return value;
        frame.vars[macro.params[i]] = std::move(*value);
      } else {
        frame.vars[macro.params[i]] = Value::undefined(fmt::format("parameter '{}' was not provided", macro.params[i]));
      }
    }
    ++call_depth_;
    auto text = capture(macro.body, frame);
    --call_depth_;
    if (!text) return std::unexpected(text.error());
    return Value(std::move(*text));
  }

  // ---- expressions ----

  Result<Value> eval_with_block_input(const Expr& filter, Scope& scope, Value input) {
    Value saved = std::exchange(block_input_, std::move(input));
    auto result = eval(filter, scope);
    block_input_ = std::move(saved);
    return result;
  }

  Result<CallArgs> eval_args(const Expr& call, Scope& scope) {
    CallArgs args;
    for (size_t i = 1; i < call.operands.size(); ++i) {
      TRY_AT(Value value, eval(*call.operands[i], scope), call.line);
      args.positional.push_back(std::move(value));
    }
    for (const auto& [key, expr] : call.keywords) {
      TRY_AT(Value value, eval(*expr, scope), call.line);
      args.keywords.emplace_back(key, std::move(value));
    }
    return args;
  }

  Result<Value> eval(const Expr& e, Scope& scope) {
    switch (e.kind) {
      case ExprKind::kConstant: return e.constant;
      case ExprKind::kName: {
        if (const Value* value = scope.find(e.name)) return *value;
        return Value::undefined(fmt::format("'{}' is undefined", e.name));
      }
      case ExprKind::kList:
      case ExprKind::kTuple: {
        ValueList items;
        items.reserve(e.operands.size());
        for (const ExprPtr& operand : e.operands) {
          TRY_AT(Value item, eval(*operand, scope), e.line);
          items.push_back(std::move(item));
        }
        return Value::list(std::move(items), e.kind == ExprKind::kList ? SeqKind::kList : SeqKind::kTuple);
      }
      case ExprKind::kDict: {
        DictData dict;
        for (size_t i = 0; i + 1 < e.operands.size(); i += 2) {
          TRY_AT(Value key, eval(*e.operands[i], scope), e.line);
          TRY_AT(Value value, eval(*e.operands[i + 1], scope), e.line);
          if (key.is_list() && !key.is_seq(SeqKind::kTuple))
            return fail("chat template line {}: unhashable type: 'list'", e.line);
          if (key.is_dict()) return fail("chat template line {}: unhashable type: 'dict'", e.line);
          dict.set(std::move(key), std::move(value));
        }
        return Value::dict(std::move(dict));
      }
      case ExprKind::kGetAttr: {
        TRY_AT(Value object, eval(*e.operands[0], scope), e.line);
        TRY_AT(Value value, get_attribute(state_, object, e.name), e.line);
        return value;
      }
      case ExprKind::kGetItem: {
        TRY_AT(Value object, eval(*e.operands[0], scope), e.line);
        TRY_AT(Value key, eval(*e.operands[1], scope), e.line);
        TRY_AT(Value value, get_item(state_, object, key), e.line);
        return value;
      }
      case ExprKind::kSlice: {
        TRY_AT(Value object, eval(*e.operands[0], scope), e.line);
        Value bounds[3] = {Value::none(), Value::none(), Value::none()};  // omitted parts are None
        for (int i = 0; i < 3; ++i) {
          if (!e.operands[static_cast<size_t>(i) + 1]) continue;
          TRY_AT(bounds[i], eval(*e.operands[static_cast<size_t>(i) + 1], scope), e.line);
        }
        TRY_AT(Value value, get_slice(state_, object, bounds[0], bounds[1], bounds[2]), e.line);
        return value;
      }
      case ExprKind::kCall: return eval_call(e, scope);
      case ExprKind::kFilter: {
        Value subject;
        if (e.operands[0]) {
          TRY_AT(subject, eval(*e.operands[0], scope), e.line);
        } else {
          subject = block_input_;
        }
        TRY_AT(CallArgs args, eval_args(e, scope), e.line);
        TRY_AT(Value value, e.filter->fn(state_, subject, args), e.line);
        return value;
      }
      case ExprKind::kTest: {
        TRY_AT(Value subject, eval(*e.operands[0], scope), e.line);
        TRY_AT(CallArgs args, eval_args(e, scope), e.line);
        TRY_AT(bool result, e.test->fn(state_, subject, args), e.line);
        return Value(result != e.negated);
      }
      case ExprKind::kUnary: {
        TRY_AT(Value operand, eval(*e.operands[0], scope), e.line);
        if (e.op == Op::kNot) return Value(!truthy(operand));
        TRY_AT(Value value, unary_op(e.op, operand), e.line);
        return value;
      }
      case ExprKind::kBinary: {
        TRY_AT(Value left, eval(*e.operands[0], scope), e.line);
        TRY_AT(Value right, eval(*e.operands[1], scope), e.line);
        TRY_AT(Value value, binary_op(state_, e.op, left, right), e.line);
        return value;
      }
      case ExprKind::kConcat: {
        std::string text;
        for (const ExprPtr& operand : e.operands) {
          TRY_AT(Value value, eval(*operand, scope), e.line);
          TRY_AT(std::string piece, to_str(value), e.line);
          text += piece;
        }
        CHECK_AT(state_.charge_bytes(text.size()), e.line);
        return Value(std::move(text));
      }
      case ExprKind::kAnd:
      case ExprKind::kOr: {
        TRY_AT(Value left, eval(*e.operands[0], scope), e.line);
        if (truthy(left) == (e.kind == ExprKind::kOr)) return left;
        return eval(*e.operands[1], scope);
      }
      case ExprKind::kCompare: {
        TRY_AT(Value left, eval(*e.operands[0], scope), e.line);
        for (size_t i = 0; i < e.compare_ops.size(); ++i) {
          TRY_AT(Value right, eval(*e.operands[i + 1], scope), e.line);
          TRY_AT(bool holds, compare_op(e.compare_ops[i], left, right), e.line);
          if (!holds) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case ExprKind::kCondition: {
        TRY_AT(Value test, eval(*e.operands[1], scope), e.line);
        if (truthy(test)) return eval(*e.operands[0], scope);
        if (e.operands[2]) return eval(*e.operands[2], scope);
        return Value::undefined(fmt::format(
            "the inline if-expression on line {} evaluated to false and no else section was defined.", e.line));
      }
    }
    return fail("chat template line {}: unhandled expression", e.line);
  }

  Result<Value> eval_call(const Expr& e, Scope& scope) {
    TRY_AT(Value callee, eval(*e.operands[0], scope), e.line);
    if (callee.is_undefined()) return fail("{}{}: {}", kLinePrefix, e.line, callee.text());
    if (!callee.is_function()) return fail("{}{}: '{}' object is not callable", kLinePrefix, e.line, type_name(callee));
    TRY_AT(CallArgs args, eval_args(e, scope), e.line);
    TRY_AT(Value value, callee.function().call(args), e.line);
    return value;
  }

  const RenderOptions& options_;
  RenderState state_;
  Scope globals_;
  Scope* root_ = nullptr;
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  Value block_input_;  // the captured body a filter block or set block filters
};

}  // namespace

Result<std::string> evaluate(const Program& program, const Value& context, const RenderOptions& options) {
  return Evaluator(options).run(program, context);
}

}  // namespace tern::chat
