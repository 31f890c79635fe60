// jinja2's built-in filters (jinja2/filters.py) as HF's environment has them, with HF's own `tojson`.
// Each follows the Python code it replaces, including its quirks: `title` splits words on "-", space
// and brackets rather than using str.title(); `unique`, `sort`, `min` and `max` ignore case by
// default; `map`, `select`, `reject`, `selectattr`, `rejectattr`, `unique` and `items` return
// single-pass generators; `reverse` of a list returns an iterator.

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/json_value.h"
#include "tokenizer/template/operators.h"
#include "tokenizer/template/py_str.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

/// jinja2's soft_str: Markup stays Markup, undefined becomes "", everything else str().
Result<Value> soft_str(const Value& value) {
  if (value.is_string()) return value;
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  return Value(std::move(*text));
}

// ---- text filters ----

Result<Value> filter_string(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "string");
  return soft_str(value);
}

Result<Value> filter_trim(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "trim", {"chars", Value::none()});
  auto text = soft_str(value);
  if (!text) return text;
  std::u32string chars;
  if (!bound[0].is_none()) {
    if (!bound[0].is_string()) return fail("strip arg must be None or str");
    chars = unicode::to_code_points(bound[0].text());
  }
  std::string out = py_str::strip(text->text(), bound[0].is_none() ? nullptr : &chars, true, true);
  return text->is_markup() ? Value::markup(std::move(out)) : Value(std::move(out));
}

Result<Value> case_filter(const Value& value, CallArgs& args, std::string_view name,
                          Result<std::string> (*convert)(std::string_view)) {
  BIND(bound, name);
  auto text = soft_str(value);
  if (!text) return text;
  auto out = convert(text->text());
  if (!out) return std::unexpected(out.error());
  return text->is_markup() ? Value::markup(std::move(*out)) : Value(std::move(*out));
}

Result<Value> filter_upper(RenderState&, const Value& value, CallArgs& args) {
  return case_filter(value, args, "upper", unicode::to_upper);
}
Result<Value> filter_lower(RenderState&, const Value& value, CallArgs& args) {
  return case_filter(value, args, "lower", unicode::to_lower);
}
Result<Value> filter_capitalize(RenderState&, const Value& value, CallArgs& args) {
  return case_filter(value, args, "capitalize", unicode::capitalize);
}

/// jinja2's do_title: split on runs of [-\s({[<] (kept), then upper the first character of each piece
/// and lower the rest.
Result<std::string> jinja_title(std::string_view text) {
  const std::u32string cps = unicode::to_code_points(text);
  auto is_separator = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || unicode::is_space(c);
  };
  std::string out;
  size_t i = 0;
  while (i < cps.size()) {
    size_t j = i;
    const bool separator_run = is_separator(cps[i]);
    while (j < cps.size() && is_separator(cps[j]) == separator_run) ++j;
    const std::string piece = unicode::to_utf8(std::u32string_view(cps).substr(i, j - i));
    if (separator_run) {
      out += piece;
    } else {
      std::string first;
      unicode::append_utf8(first, cps[i]);
      auto upper = unicode::to_upper(first);
      auto rest = unicode::to_lower(unicode::to_utf8(std::u32string_view(cps).substr(i + 1, j - i - 1)));
      if (!upper) return upper;
      if (!rest) return rest;
      out += *upper + *rest;
    }
    i = j;
  }
  return out;
}

Result<Value> filter_title(RenderState&, const Value& value, CallArgs& args) {
  return case_filter(value, args, "title", jinja_title);
}

Result<Value> filter_replace(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "replace", {"old", Value(), true}, {"new", Value(), true}, {"count", Value::none()});
  auto text = to_str(value);
  auto old_text = to_str(bound[0]);
  auto new_text = to_str(bound[1]);
  if (!text || !old_text || !new_text) return fail("replace: arguments must be printable");
  int64_t count = -1;
  if (!bound[2].is_none()) {
    if (!bound[2].is_int()) return fail("'{}' object cannot be interpreted as an integer", type_name(bound[2]));
    count = bound[2].as_int();
  }
  std::string out = py_str::replace(*text, *old_text, *new_text, count);
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return Value(std::move(out));
}

Result<Value> filter_indent(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "indent", {"width", Value(4)}, {"first", Value(false)}, {"blank", Value(false)});
  if (value.is_undefined()) return fail("{}", value.text());
  // do_indent starts with `s += "\n"` and then calls s.splitlines(): only a string gets through.
  if (value.is_seq(SeqKind::kList)) return fail("'list' object has no attribute 'splitlines'");
  if (!value.is_string()) return fail("unsupported operand type(s) for +=: '{}' and 'str'", type_name(value));
  std::string indentation;
  if (bound[0].is_string()) {
    indentation = bound[0].text();
  } else if (bound[0].is_int()) {
    indentation.assign(static_cast<size_t>(std::max<int64_t>(0, bound[0].as_int())), ' ');
  } else {
    return fail("indent width must be an int or a str");
  }
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  // jinja2 appends "\n" before splitlines() so that a trailing newline is kept.
  const std::vector<std::string> lines = py_str::splitlines(*text + "\n", false);
  std::string out;
  if (truthy(bound[2])) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) {
        out += '\n';
        out += indentation;
      }
      out += lines[i];
    }
  } else {
    out = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indentation;
      out += lines[i];
    }
  }
  if (truthy(bound[1])) out = indentation + out;
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return value.is_markup() ? Value::markup(std::move(out)) : Value(std::move(out));
}

Result<Value> filter_center(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "center", {"width", Value(80)});
  if (!bound[0].is_int()) return fail("center width must be an int");
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  std::string out = py_str::pad(*text, bound[0].as_int(), ' ', 0);
  return value.is_markup() ? Value::markup(std::move(out)) : Value(std::move(out));
}

Result<Value> filter_safe(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "safe");
  if (value.is_markup()) return value;
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  return Value::markup(std::move(*text));
}

Result<Value> filter_escape(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "escape");
  if (value.is_markup()) return value;
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  return Value::markup(html_escape(*text));
}

Result<Value> filter_forceescape(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "forceescape");
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  return Value::markup(html_escape(*text));
}

Result<Value> filter_format(RenderState& state, const Value& value, CallArgs& args) {
  if (!args.keywords.empty()) return fail("format: keyword arguments (%(name)s) are not supported");
  // Markup's % escapes the arguments; not modelled, so refuse rather than print unescaped text.
  if (value.is_markup()) return fail("format of a |safe or |escape result is not supported");
  auto text = to_str(value);
  if (!text) return std::unexpected(text.error());
  auto out = percent_format(state, *text, Value::list(std::move(args.positional), SeqKind::kTuple));
  if (!out) return std::unexpected(out.error());
  return Value(std::move(*out));
}

Result<Value> filter_tojson(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "tojson", {"ensure_ascii", Value(false)}, {"indent", Value::none()}, {"separators", Value::none()},
       {"sort_keys", Value(false)});
  JsonDumpOptions options;
  options.ensure_ascii = truthy(bound[0]);
  const Value& indent = bound[1];
  if (indent.is_string()) {
    options.indent = indent.text();
  } else if (indent.is_int() || indent.is_bool()) {
    options.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, indent.as_int())), ' ');
  } else if (!indent.is_none()) {
    return fail("tojson: indent must be an int, a str or None");
  }
  const Value& separators = bound[2];
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.items().size() != 2 || !separators.items()[0].is_string() ||
        !separators.items()[1].is_string()) {
      return fail("tojson: separators must be a pair of strings");
    }
    options.item_separator = separators.items()[0].text();
    options.key_separator = separators.items()[1].text();
  }
  options.sort_keys = truthy(bound[3]);
  auto text = json_dumps(value, options);
  if (!text) return std::unexpected(text.error());
  if (auto r = state.charge_bytes(text->size()); !r) return std::unexpected(r.error());
  return Value(std::move(*text));
}

// ---- numbers ----

/// Python int(str, 10): surrounding whitespace, a sign, digits with single underscores between.
std::optional<int64_t> parse_python_int(std::string_view text) {
  const std::string stripped = py_str::strip(text, nullptr, true, true);
  std::string digits;
  size_t i = 0;
  if (i < stripped.size() && (stripped[i] == '+' || stripped[i] == '-')) digits.push_back(stripped[i++]);
  bool last_digit = false;
  for (; i < stripped.size(); ++i) {
    const char c = stripped[i];
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
      last_digit = true;
    } else if (c == '_' && last_digit && i + 1 < stripped.size()) {
      last_digit = false;
    } else {
      return std::nullopt;
    }
  }
  if (!last_digit) return std::nullopt;
  if (digits[0] == '+') digits.erase(0, 1);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

/// Python float(str): whitespace, underscores between digits, inf/nan spellings.
std::optional<double> parse_python_float(std::string_view text) {
  std::string stripped = py_str::strip(text, nullptr, true, true);
  std::string lowered;
  for (char c : stripped) lowered.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  std::string_view body = lowered;
  const bool negative = body.starts_with('-');
  if (body.starts_with('-') || body.starts_with('+')) body.remove_prefix(1);
  if (body == "inf" || body == "infinity") return negative ? -INFINITY : INFINITY;
  if (body == "nan") return NAN;
  std::string cleaned;
  for (size_t i = 0; i < stripped.size(); ++i) {
    if (stripped[i] == '_') {
      const bool between = i > 0 && i + 1 < stripped.size() &&
                           std::isdigit(static_cast<unsigned char>(stripped[i - 1])) &&
                           std::isdigit(static_cast<unsigned char>(stripped[i + 1]));
      if (!between) return std::nullopt;
      continue;
    }
    cleaned.push_back(stripped[i]);
  }
  if (cleaned.empty() || cleaned.find_first_not_of("0123456789+-.eE") != std::string::npos) return std::nullopt;
  const char* begin = cleaned.data() + (cleaned[0] == '+' ? 1 : 0);
  double value = 0;
  auto [end, ec] = std::from_chars(begin, cleaned.data() + cleaned.size(), value);
  if (ec != std::errc() || end != cleaned.data() + cleaned.size()) return std::nullopt;
  return value;
}

Result<Value> filter_int(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "int", {"default", Value(0)}, {"base", Value(10)});
  if (value.is_undefined()) return fail("{}", value.text());
  if (value.is_int() || value.is_bool()) return Value(value.as_int());
  if (value.is_float()) {
    const double d = value.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return bound[0];
    return Value(static_cast<int64_t>(std::trunc(d)));
  }
  if (value.is_string()) {
    if (!(bound[1].is_int() && bound[1].as_int() == 10)) return fail("int: only base 10 is supported");
    if (auto i = parse_python_int(value.text())) return Value(*i);
    if (auto d = parse_python_float(value.text()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18) {
      return Value(static_cast<int64_t>(std::trunc(*d)));
    }
  }
  return bound[0];
}

Result<Value> filter_float(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "float", {"default", Value(0.0)});
  if (value.is_undefined()) return fail("{}", value.text());
  if (value.is_number()) return Value(value.as_double());
  if (value.is_string()) {
    if (auto d = parse_python_float(value.text())) return Value(*d);
  }
  return bound[0];
}

Result<Value> filter_abs(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "abs");
  if (value.is_float()) return Value(std::fabs(value.as_double()));
  if (value.is_int() || value.is_bool()) {
    if (value.as_int() == INT64_MIN) return fail("integer result does not fit in 64 bits");
    return Value(value.as_int() < 0 ? -value.as_int() : value.as_int());
  }
  return fail("bad operand type for abs(): '{}'", type_name(value));
}

Result<Value> filter_round(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "round", {"precision", Value(0)}, {"method", Value("common")});
  if (!bound[0].is_int() && !bound[0].is_bool()) return fail("round precision must be an int");
  const int64_t precision = bound[0].as_int();
  const std::string method = bound[1].is_string() ? bound[1].text() : "";
  if (method != "common" && method != "ceil" && method != "floor") return fail("method must be common, ceil or floor");
  if (!value.is_number()) {
    // 'common' calls round(); ceil/floor call math.ceil/floor on value * 10**precision, where
    // sequences repeat and everything else fails to multiply.
    if (method == "common") return fail("type {} doesn't define __round__ method", type_name(value));
    if (value.is_undefined()) return fail("{}", value.text());
    if (value.is_string() || value.is_seq(SeqKind::kList) || value.is_seq(SeqKind::kTuple)) {
      return fail("must be real number, not {}", type_name(value));
    }
    return fail("unsupported operand type(s) for *: '{}' and 'int'", type_name(value));
  }
  if (precision < 0 || precision > 300) return fail("round: precision {} is not supported", precision);
  if (method == "common") {
    if (!value.is_float()) return Value(value.as_int());  // round(int, n >= 0) is the int itself
    const double d = value.as_double();
    if (!std::isfinite(d)) return value;
    // Python rounds the exact binary value half-to-even, which is what a correctly rounded fixed
    // conversion does; parse it back to get the nearest double.
    char buffer[512];
    auto [end, ec] =
        std::to_chars(buffer, buffer + sizeof(buffer), d, std::chars_format::fixed, static_cast<int>(precision));
    if (ec != std::errc()) return fail("round: value out of range");
    double rounded = 0;
    std::from_chars(buffer, end, rounded);
    return Value(rounded);
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = value.as_double() * scale;
  // math.ceil/floor return an int, so a zero result carries no sign.
  const double whole = (method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) + 0.0;
  return Value(whole / scale);
}

}  // namespace

// Sequence filters live in filters_sequence.cpp; they register through this table too.
Result<Value> filter_length(RenderState&, const Value&, CallArgs&);
Result<Value> filter_join(RenderState&, const Value&, CallArgs&);
Result<Value> filter_default(RenderState&, const Value&, CallArgs&);
Result<Value> filter_first(RenderState&, const Value&, CallArgs&);
Result<Value> filter_last(RenderState&, const Value&, CallArgs&);
Result<Value> filter_list(RenderState&, const Value&, CallArgs&);
Result<Value> filter_items(RenderState&, const Value&, CallArgs&);
Result<Value> filter_map(RenderState&, const Value&, CallArgs&);
Result<Value> filter_select(RenderState&, const Value&, CallArgs&);
Result<Value> filter_reject(RenderState&, const Value&, CallArgs&);
Result<Value> filter_selectattr(RenderState&, const Value&, CallArgs&);
Result<Value> filter_rejectattr(RenderState&, const Value&, CallArgs&);
Result<Value> filter_unique(RenderState&, const Value&, CallArgs&);
Result<Value> filter_sort(RenderState&, const Value&, CallArgs&);
Result<Value> filter_dictsort(RenderState&, const Value&, CallArgs&);
Result<Value> filter_min(RenderState&, const Value&, CallArgs&);
Result<Value> filter_max(RenderState&, const Value&, CallArgs&);
Result<Value> filter_sum(RenderState&, const Value&, CallArgs&);
Result<Value> filter_reverse(RenderState&, const Value&, CallArgs&);
Result<Value> filter_batch(RenderState&, const Value&, CallArgs&);

namespace {

constexpr FilterSpec kFilters[] = {
    {"abs", filter_abs},
    {"batch", filter_batch},
    {"capitalize", filter_capitalize},
    {"center", filter_center},
    {"count", filter_length},
    {"d", filter_default},
    {"default", filter_default},
    {"dictsort", filter_dictsort},
    {"e", filter_escape},
    {"escape", filter_escape},
    {"first", filter_first},
    {"float", filter_float},
    {"forceescape", filter_forceescape},
    {"format", filter_format},
    {"indent", filter_indent},
    {"int", filter_int},
    {"items", filter_items},
    {"join", filter_join},
    {"last", filter_last},
    {"length", filter_length},
    {"list", filter_list},
    {"lower", filter_lower},
    {"map", filter_map},
    {"max", filter_max},
    {"min", filter_min},
    {"reject", filter_reject},
    {"rejectattr", filter_rejectattr},
    {"replace", filter_replace},
    {"reverse", filter_reverse},
    {"round", filter_round},
    {"safe", filter_safe},
    {"select", filter_select},
    {"selectattr", filter_selectattr},
    {"sort", filter_sort},
    {"string", filter_string},
    {"sum", filter_sum},
    {"title", filter_title},
    {"tojson", filter_tojson},
    {"trim", filter_trim},
    {"unique", filter_unique},
    {"upper", filter_upper},
};

/// jinja2 built-ins left out: rarely (or never) seen in chat templates, or nondeterministic (random).
constexpr std::string_view kUnsupportedFilters[] = {
    "attr",     "filesizeformat", "groupby", "pprint",    "random",   "slice",   "striptags",
    "truncate", "urlencode",      "urlize",  "wordcount", "wordwrap", "xmlattr",
};

}  // namespace

const FilterSpec* find_filter(std::string_view name) {
  for (const FilterSpec& spec : kFilters) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool is_unsupported_filter(std::string_view name) {
  return std::find(std::begin(kUnsupportedFilters), std::end(kUnsupportedFilters), name) !=
         std::end(kUnsupportedFilters);
}

}  // namespace tern::chat
