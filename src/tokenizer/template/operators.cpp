#include "tokenizer/template/operators.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/template/py_str.h"
#include "tokenizer/template/python_text.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

std::string_view symbol(Op op) {
  switch (op) {
    case Op::kAdd: return "+";
    case Op::kSub: return "-";
    case Op::kMul: return "*";
    case Op::kDiv: return "/";
    case Op::kFloorDiv: return "//";
    case Op::kMod: return "%";
    case Op::kPow: return "** or pow()";
    default: return "?";
  }
}

std::unexpected<Error> unsupported(Op op, const Value& a, const Value& b) {
  return fail("unsupported operand type(s) for {}: '{}' and '{}'", symbol(op), type_name(a), type_name(b));
}

std::unexpected<Error> overflow() { return fail("integer result does not fit in 64 bits"); }

/// Python's float divmod (Objects/floatobject.c), so that signs and rounding match exactly.
void float_divmod(double x, double y, double& floor_div, double& mod) {
  mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0.0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  if (div != 0.0) {
    floor_div = std::floor(div);
    if (div - floor_div > 0.5) floor_div += 1.0;
  } else {
    floor_div = std::copysign(0.0, x / y);
  }
}

/// `text * count` (or a list): Python repeats, and a count below one gives an empty result.
Result<Value> repeat(RenderState& state, const Value& sequence, int64_t count) {
  if (count <= 0) return sequence.is_string() ? Value(std::string()) : Value::list({}, sequence.list().kind);
  if (sequence.is_string()) {
    const size_t total = sequence.text().size() * static_cast<size_t>(count);
    if (count > 0 && total / static_cast<size_t>(count) != sequence.text().size()) return overflow();
    if (auto r = state.charge_bytes(total); !r) return std::unexpected(r.error());
    std::string out;
    out.reserve(total);
    for (int64_t i = 0; i < count; ++i) out += sequence.text();
    return sequence.is_markup() ? Value::markup(std::move(out)) : Value(std::move(out));
  }
  const size_t total = sequence.items().size() * static_cast<size_t>(count);
  if (auto r = state.charge_bytes(total * sizeof(Value)); !r) return std::unexpected(r.error());
  ValueList out;
  out.reserve(total);
  for (int64_t i = 0; i < count; ++i) out.insert(out.end(), sequence.items().begin(), sequence.items().end());
  return Value::list(std::move(out), sequence.list().kind);
}

bool is_concatenable_list(const Value& v) { return v.is_seq(SeqKind::kList) || v.is_seq(SeqKind::kTuple); }

Result<Value> add(RenderState& state, const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return Value(a.as_double() + b.as_double());
    int64_t out;
    if (__builtin_add_overflow(a.as_int(), b.as_int(), &out)) return overflow();
    return Value(out);
  }
  if (a.is_string() && b.is_string()) {
    if (auto r = state.charge_bytes(a.text().size() + b.text().size()); !r) return std::unexpected(r.error());
    // markupsafe: Markup + str escapes the str (either side), and the result stays Markup.
    if (a.is_markup() || b.is_markup()) {
      const std::string left = a.is_markup() ? a.text() : html_escape(a.text());
      const std::string right = b.is_markup() ? b.text() : html_escape(b.text());
      return Value::markup(left + right);
    }
    return Value(a.text() + b.text());
  }
  if (is_concatenable_list(a) && is_concatenable_list(b) && a.list().kind == b.list().kind) {
    ValueList out = a.items();
    out.insert(out.end(), b.items().begin(), b.items().end());
    if (auto r = state.charge_bytes(out.size() * sizeof(Value)); !r) return std::unexpected(r.error());
    return Value::list(std::move(out), a.list().kind);
  }
  if (a.is_string() && !b.is_markup()) {
    return fail("can only concatenate str (not \"{}\") to str", type_name(b));
  }
  if (is_concatenable_list(a)) {
    return fail("can only concatenate {} (not \"{}\") to {}", type_name(a), type_name(b), type_name(a));
  }
  return unsupported(Op::kAdd, a, b);
}

Result<Value> arithmetic(Op op, const Value& a, const Value& b) {
  const bool use_float = a.is_float() || b.is_float();
  if (op == Op::kDiv) {
    if (b.as_double() == 0.0) return fail("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (use_float) {
    const double x = a.as_double();
    const double y = b.as_double();
    switch (op) {
      case Op::kSub: return Value(x - y);
      case Op::kMul: return Value(x * y);
      case Op::kFloorDiv:
      case Op::kMod: {
        if (y == 0.0) return fail("{}", op == Op::kMod ? "float modulo" : "float floor division by zero");
        double floor_div, mod;
        float_divmod(x, y, floor_div, mod);
        return Value(op == Op::kMod ? mod : floor_div);
      }
      case Op::kPow: {
        if (x == 0.0 && y < 0) return fail("0.0 cannot be raised to a negative power");
        if (x < 0 && std::floor(y) != y) return fail("unsupported: a negative number raised to a fractional power");
        return Value(std::pow(x, y));
      }
      default: break;
    }
    return unsupported(op, a, b);
  }
  const int64_t x = a.as_int();
  const int64_t y = b.as_int();
  int64_t out = 0;
  switch (op) {
    case Op::kSub:
      if (__builtin_sub_overflow(x, y, &out)) return overflow();
      return Value(out);
    case Op::kMul:
      if (__builtin_mul_overflow(x, y, &out)) return overflow();
      return Value(out);
    case Op::kFloorDiv:
    case Op::kMod: {
      if (y == 0) return fail("{}", op == Op::kMod ? "integer modulo by zero" : "integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) return overflow();
      int64_t quotient = x / y;
      int64_t remainder = x % y;
      if (remainder != 0 && ((remainder < 0) != (y < 0))) {
        quotient -= 1;
        remainder += y;
      }
      return Value(op == Op::kMod ? remainder : quotient);
    }
    case Op::kPow: {
      if (y < 0) {
        if (x == 0) return fail("0.0 cannot be raised to a negative power");
        return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      }
      int64_t result = 1;
      for (int64_t i = 0; i < y; ++i) {
        if (__builtin_mul_overflow(result, x, &result)) return overflow();
        if (result == 0 || result == 1) break;  // further factors change nothing (x is 0 or 1)
      }
      if (x == -1) result = (y % 2 == 0) ? 1 : -1;
      return Value(result);
    }
    default: break;
  }
  return unsupported(op, a, b);
}

}  // namespace

Result<Value> binary_op(RenderState& state, Op op, const Value& a, const Value& b) {
  // str % x is str.__mod__, which accepts anything (even undefined) before x gets a say.
  if (op == Op::kMod && a.is_string() && !a.is_markup()) {
    auto text = percent_format(state, a.text(), b);
    if (!text) return std::unexpected(text.error());
    return Value(std::move(*text));
  }
  // jinja2's Undefined raises on every other arithmetic operator, from either side.
  if (a.is_undefined()) return fail("{}", a.text());
  if (b.is_undefined()) return fail("{}", b.text());
  if (op == Op::kAdd) return add(state, a, b);
  if (op == Op::kMul) {
    const bool a_sequence = a.is_string() || is_concatenable_list(a);
    const bool b_sequence = b.is_string() || is_concatenable_list(b);
    if (a_sequence && (b.is_int() || b.is_bool())) return repeat(state, a, b.as_int());
    if (b_sequence && (a.is_int() || a.is_bool())) return repeat(state, b, a.as_int());
    if (a_sequence || b_sequence) {
      return fail("can't multiply sequence by non-int of type '{}'", type_name(a_sequence ? b : a));
    }
  }
  if (op == Op::kMod && a.is_markup()) return fail("% formatting of a |safe or |escape result is not supported");
  if (a.is_number() && b.is_number()) return arithmetic(op, a, b);
  return unsupported(op, a, b);
}

Result<Value> unary_op(Op op, const Value& a) {
  if (a.is_undefined()) return fail("{}", a.text());
  if (!a.is_number()) return fail("bad operand type for unary {}: '{}'", op == Op::kNeg ? "-" : "+", type_name(a));
  if (a.is_float()) return Value(op == Op::kNeg ? -a.as_double() : a.as_double());
  if (op == Op::kPos) return Value(a.as_int());
  if (a.as_int() == std::numeric_limits<int64_t>::min()) return overflow();
  return Value(-a.as_int());
}

Result<bool> contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case ValueKind::kString:
      if (!item.is_string()) {
        return fail("'in <string>' requires string as left operand, not {}", type_name(item));
      }
      return container.text().find(item.text()) != std::string::npos;
    case ValueKind::kDict:
      if (item.is_list() && !item.is_seq(SeqKind::kTuple)) return fail("unhashable type: '{}'", type_name(item));
      if (item.is_dict()) return fail("unhashable type: 'dict'");
      return container.dict().find(item) != nullptr;
    case ValueKind::kUndefined:
    case ValueKind::kList: {
      auto items = iterate(container);
      if (!items) return std::unexpected(items.error());
      for (const Value& element : *items) {
        if (equals(element, item)) return true;
      }
      return false;
    }
    default: return fail("argument of type '{}' is not iterable", type_name(container));
  }
}

Result<bool> compare_op(Op op, const Value& a, const Value& b) {
  switch (op) {
    case Op::kEq: return equals(a, b);
    case Op::kNe: return !equals(a, b);
    case Op::kIn: return contains(b, a);
    case Op::kNotIn: {
      auto r = contains(b, a);
      if (!r) return r;
      return !*r;
    }
    default: break;
  }
  std::string_view name = op == Op::kLt ? "<" : op == Op::kLe ? "<=" : op == Op::kGt ? ">" : ">=";
  // NaN compares false with everything, as in Python.
  if ((a.is_float() && std::isnan(a.as_double())) || (b.is_float() && std::isnan(b.as_double()))) {
    if (a.is_number() && b.is_number()) return false;
  }
  auto c = compare(a, b, name);
  if (!c) return std::unexpected(c.error());
  switch (op) {
    case Op::kLt: return *c < 0;
    case Op::kLe: return *c <= 0;
    case Op::kGt: return *c > 0;
    default: return *c >= 0;
  }
}

Result<std::string> percent_format(RenderState& state, const std::string& format, const Value& args) {
  ValueList values;
  if (args.is_seq(SeqKind::kTuple)) {
    values = args.items();
  } else {
    values.push_back(args);
  }
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return fail("incomplete format");
    if (format[i] == '%') {
      out.push_back('%');
      continue;
    }
    // Optional flags, width and precision: enough for "%5d", "%-10s", "%.2f", "%05.1f".
    std::string spec;
    while (i < format.size() && std::string_view("-0 +").find(format[i]) != std::string_view::npos) {
      spec.push_back(format[i++]);
    }
    while (i < format.size() && format[i] >= '0' && format[i] <= '9') spec.push_back(format[i++]);
    std::string precision;
    if (i < format.size() && format[i] == '.') {
      ++i;
      while (i < format.size() && format[i] >= '0' && format[i] <= '9') precision.push_back(format[i++]);
      if (precision.empty()) precision.assign(1, '0');
    }
    if (i >= format.size()) return fail("incomplete format");
    const char conversion = format[i];
    if (next >= values.size()) return fail("not enough arguments for format string");
    const Value& value = values[next++];
    std::string piece;
    switch (conversion) {
      case 's':
      case 'r': {
        auto text = conversion == 's' ? to_str(value) : to_repr(value);
        if (!text) return text;
        piece = std::move(*text);
        if (!precision.empty()) {
          const auto keep = std::min<int64_t>(std::stoll(precision), static_cast<int64_t>(unicode::length(piece)));
          piece = py_str::slice(piece, 0, keep, 1);  // %.Ns keeps N characters, not bytes
        }
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'f': {
        if (!value.is_number()) {
          return fail("%{} format: a real number is required, not {}", conversion, type_name(value));
        }
        if (conversion == 'f') {
          const double v = value.as_double();
          const int digits = precision.empty() ? 6 : std::stoi(precision);
          piece = std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : float_repr(v);
        } else {
          const int64_t v = value.is_float() ? static_cast<int64_t>(std::trunc(value.as_double())) : value.as_int();
          piece = conversion == 'x' ? fmt::format("{:x}", v) : std::to_string(v);
        }
        if (spec.find('+') != std::string::npos && piece[0] != '-') piece.insert(0, 1, '+');
        break;
      }
      default: return fail("unsupported format character '{}' in % formatting", conversion);
    }
    size_t width = 0;
    for (char c : spec) {
      if (c >= '1' && c <= '9') {
        width = std::stoul(spec.substr(spec.find(c)));
        break;
      }
    }
    const size_t shown = unicode::length(piece);  // Python pads by characters
    if (width > shown) {
      const size_t pad = width - shown;
      if (spec.find('-') != std::string::npos) {
        piece.append(pad, ' ');
      } else if (spec.find('0') != std::string::npos && conversion != 's' && conversion != 'r') {
        const size_t sign = piece[0] == '-' || piece[0] == '+' ? 1 : 0;
        piece.insert(sign, pad, '0');
      } else {
        piece.insert(0, pad, ' ');
      }
    }
    out += piece;
  }
  // Python treats any subscriptable non-tuple argument (dict, list) as a mapping, so it does not
  // complain about it going unused.
  const bool mapping_like = args.is_dict() || args.is_undefined() || (args.is_list() && !args.is_seq(SeqKind::kTuple));
  if (next < values.size() && !mapping_like) {
    return fail("not all arguments converted during string formatting");
  }
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return out;
}

}  // namespace tern::chat
