// jinja2's tests (jinja2/tests.py): `x is defined`, `x is string`, `x is divisibleby 3`, ... and the
// test names `select`/`reject`/`selectattr` take. Each mirrors the Python predicate jinja2 uses, e.g.
// `number` is isinstance(x, numbers.Number), which includes bools.

#include <algorithm>
#include <array>

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/operators.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

/// The single argument of a comparison-style test (`equalto`, `divisibleby`, ...).
Result<Value> one_argument(std::string_view test, CallArgs& args) {
  static const Param kParams[] = {{"other", Value(), true}};
  auto bound = bind_args(test, args, kParams);
  if (!bound) return std::unexpected(bound.error());
  return std::move((*bound)[0]);
}

Result<void> no_arguments(std::string_view test, CallArgs& args) {
  auto bound = bind_args(test, args, {});
  if (!bound) return std::unexpected(bound.error());
  return {};
}

#define SIMPLE_TEST(fn_name, test_name, expression)                                    \
  Result<bool> fn_name(RenderState&, const Value& value, CallArgs& args) {             \
    if (auto r = no_arguments(test_name, args); !r) return std::unexpected(r.error()); \
    return (expression);                                                               \
  }

SIMPLE_TEST(test_defined, "defined", !value.is_undefined())
SIMPLE_TEST(test_undefined, "undefined", value.is_undefined())
SIMPLE_TEST(test_none, "none", value.is_none())
SIMPLE_TEST(test_boolean, "boolean", value.is_bool())
SIMPLE_TEST(test_true, "true", value.is_bool() && value.as_bool())
SIMPLE_TEST(test_false, "false", value.is_bool() && !value.as_bool())
SIMPLE_TEST(test_integer, "integer", value.is_int())
SIMPLE_TEST(test_float, "float", value.is_float())
SIMPLE_TEST(test_number, "number", value.is_number())
SIMPLE_TEST(test_string, "string", value.is_string())
SIMPLE_TEST(test_mapping, "mapping", value.is_dict())
SIMPLE_TEST(test_escaped, "escaped", value.is_markup())
SIMPLE_TEST(test_callable, "callable", value.is_function() || value.is_loop())
// Sequences have len() and [] (str, list, tuple, dict; jinja2's Undefined too); generators and dict
// views do not.
SIMPLE_TEST(test_sequence, "sequence",
            value.is_string() || value.is_dict() || value.is_undefined() || value.is_seq(SeqKind::kList) ||
                value.is_seq(SeqKind::kTuple))
SIMPLE_TEST(test_iterable, "iterable",
            value.is_string() || value.is_list() || value.is_dict() || value.is_undefined() || value.is_loop())

#undef SIMPLE_TEST

Result<bool> parity(RenderState& state, const Value& value, int64_t remainder) {
  auto mod = binary_op(state, Op::kMod, value, Value(2));
  if (!mod) return std::unexpected(mod.error());
  return equals(*mod, Value(remainder));
}

Result<bool> test_odd(RenderState& state, const Value& value, CallArgs& args) {
  if (auto r = no_arguments("odd", args); !r) return std::unexpected(r.error());
  return parity(state, value, 1);
}

Result<bool> test_even(RenderState& state, const Value& value, CallArgs& args) {
  if (auto r = no_arguments("even", args); !r) return std::unexpected(r.error());
  return parity(state, value, 0);
}

Result<bool> test_divisibleby(RenderState& state, const Value& value, CallArgs& args) {
  auto other = one_argument("divisibleby", args);
  if (!other) return std::unexpected(other.error());
  auto mod = binary_op(state, Op::kMod, value, *other);
  if (!mod) return std::unexpected(mod.error());
  return equals(*mod, Value(0));
}

Result<bool> case_test(const Value& value, CallArgs& args, std::string_view name,
                       Result<bool> (*test)(std::string_view)) {
  if (auto r = no_arguments(name, args); !r) return std::unexpected(r.error());
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  return test(*text);
}

Result<bool> test_lower(RenderState&, const Value& value, CallArgs& args) {
  return case_test(value, args, "lower", unicode::is_lower);
}
Result<bool> test_upper(RenderState&, const Value& value, CallArgs& args) {
  return case_test(value, args, "upper", unicode::is_upper);
}

/// Python `is`: exact for None and bools; for other values, equality of the same type, which is what
/// CPython's small-int and string interning make `is` return for the values templates compare.
Result<bool> test_sameas(RenderState&, const Value& value, CallArgs& args) {
  auto other = one_argument("sameas", args);
  if (!other) return std::unexpected(other.error());
  if (value.kind() != other->kind()) return false;
  if (value.is_list() || value.is_dict()) return value.identity() == other->identity();
  return equals(value, *other);
}

Result<bool> test_in(RenderState&, const Value& value, CallArgs& args) {
  auto other = one_argument("in", args);
  if (!other) return std::unexpected(other.error());
  return contains(*other, value);
}

template <Op op>
Result<bool> test_compare(RenderState&, const Value& value, CallArgs& args) {
  auto other = one_argument("compare", args);
  if (!other) return std::unexpected(other.error());
  return compare_op(op, value, *other);
}

Result<bool> test_filter(RenderState&, const Value& value, CallArgs& args) {
  if (auto r = no_arguments("filter", args); !r) return std::unexpected(r.error());
  return value.is_string() && find_filter(value.text()) != nullptr;
}

Result<bool> test_test(RenderState&, const Value& value, CallArgs& args) {
  if (auto r = no_arguments("test", args); !r) return std::unexpected(r.error());
  return value.is_string() && find_test(value.text()) != nullptr;
}

constexpr TestSpec kTests[] = {
    {"defined", test_defined},
    {"undefined", test_undefined},
    {"none", test_none},
    {"boolean", test_boolean},
    {"true", test_true},
    {"false", test_false},
    {"integer", test_integer},
    {"float", test_float},
    {"number", test_number},
    {"string", test_string},
    {"mapping", test_mapping},
    {"sequence", test_sequence},
    {"iterable", test_iterable},
    {"callable", test_callable},
    {"escaped", test_escaped},
    {"odd", test_odd},
    {"even", test_even},
    {"divisibleby", test_divisibleby},
    {"lower", test_lower},
    {"upper", test_upper},
    {"sameas", test_sameas},
    {"in", test_in},
    {"filter", test_filter},
    {"test", test_test},
    {"==", test_compare<Op::kEq>},
    {"eq", test_compare<Op::kEq>},
    {"equalto", test_compare<Op::kEq>},
    {"!=", test_compare<Op::kNe>},
    {"ne", test_compare<Op::kNe>},
    {">", test_compare<Op::kGt>},
    {"gt", test_compare<Op::kGt>},
    {"greaterthan", test_compare<Op::kGt>},
    {">=", test_compare<Op::kGe>},
    {"ge", test_compare<Op::kGe>},
    {"<", test_compare<Op::kLt>},
    {"lt", test_compare<Op::kLt>},
    {"lessthan", test_compare<Op::kLt>},
    {"<=", test_compare<Op::kLe>},
    {"le", test_compare<Op::kLe>},
};

}  // namespace

const TestSpec* find_test(std::string_view name) {
  for (const TestSpec& spec : kTests) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace tern::chat
