// Attribute and item access under HF's ImmutableSandboxedEnvironment, and the Python methods of str,
// dict and list that templates call. jinja2's rules, in short:
//
//   obj.name   -> Python attribute (a method) if it exists, else obj['name'], else undefined
//   obj[key]   -> obj[key] if it works, else (string keys only) the attribute, else undefined
//
// so `message.items` is the dict method even when the dict has an "items" key, and `message.role`
// finds the key. Mutating methods (list.append, dict.update, ...) are "unsafe" in the immutable
// sandbox: reading them gives an undefined that fails when called, with the sandbox's message.

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/py_str.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

using MethodFn = Result<Value> (*)(RenderState& state, const Value& self, CallArgs& args);

struct Method {
  std::string_view name;
  MethodFn fn;
};

bool contains(std::span<const std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

Value missing_attribute(const Value& object, std::string_view name) {
  return Value::undefined(fmt::format("'{}' has no attribute '{}'", object_description(object), name));
}

Value missing_element(const Value& object, const Value& key) {
  auto key_text = to_repr(key);
  return Value::undefined(fmt::format("{} has no element {}", object_description(object), key_text ? *key_text : "?"));
}

Value unsafe_attribute(const Value& object, std::string_view name) {
  return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe.", name, type_name(object)));
}

Value bind_method(RenderState& state, const Value& self, const Method& method) {
  RenderState* state_ptr = &state;
  const MethodFn fn = method.fn;
  return Value::function(std::string(method.name),
                         [state_ptr, self, fn](CallArgs& args) -> Result<Value> { return fn(*state_ptr, self, args); });
}

Result<std::string> string_arg(std::string_view function, const Value& value) {
  if (!value.is_string()) return fail("{}() argument must be str, not {}", function, type_name(value));
  return value.text();
}

/// Python accepts an int (or bool) where an index or count is expected.
Result<int64_t> int_arg(std::string_view function, const Value& value) {
  if (!value.is_int() && !value.is_bool()) {
    return fail("{}() argument must be int, not {}", function, type_name(value));
  }
  return value.as_int();
}

/// A string method result keeps jinja2's Markup type when called on Markup.
Value same_string_kind(const Value& self, std::string text) {
  return self.is_markup() ? Value::markup(std::move(text)) : Value(std::move(text));
}

// ---- str methods ----

Result<Value> str_strip_impl(const Value& self, CallArgs& args, std::string_view name, bool left, bool right) {
  auto bound = bind(name, args, {{"chars", Value::none()}});
  if (!bound) return std::unexpected(bound.error());
  const Value& chars = (*bound)[0];
  if (chars.is_none()) return same_string_kind(self, py_str::strip(self.text(), nullptr, left, right));
  if (!chars.is_string()) return fail("{} arg must be None or str", name);
  const std::u32string set = unicode::to_code_points(chars.text());
  return same_string_kind(self, py_str::strip(self.text(), &set, left, right));
}

Result<Value> str_strip(RenderState&, const Value& self, CallArgs& args) {
  return str_strip_impl(self, args, "strip", true, true);
}
Result<Value> str_lstrip(RenderState&, const Value& self, CallArgs& args) {
  return str_strip_impl(self, args, "lstrip", true, false);
}
Result<Value> str_rstrip(RenderState&, const Value& self, CallArgs& args) {
  return str_strip_impl(self, args, "rstrip", false, true);
}

Result<Value> str_split_impl(const Value& self, CallArgs& args, bool from_right) {
  const std::string_view name = from_right ? "rsplit" : "split";
  auto bound = bind(name, args, {{"sep", Value::none()}, {"maxsplit", Value(-1)}});
  if (!bound) return std::unexpected(bound.error());
  std::optional<std::string_view> sep;
  if (!(*bound)[0].is_none()) {
    if (!(*bound)[0].is_string()) return fail("must be str or None, not {}", type_name((*bound)[0]));
    sep = (*bound)[0].text();
    if (sep->empty()) return fail("empty separator");
  }
  auto maxsplit = int_arg(name, (*bound)[1]);
  if (!maxsplit) return std::unexpected(maxsplit.error());
  auto parts = from_right ? py_str::rsplit(self.text(), sep, *maxsplit) : py_str::split(self.text(), sep, *maxsplit);
  ValueList items;
  for (auto& part : parts) items.push_back(same_string_kind(self, std::move(part)));
  return Value::list(std::move(items));
}

Result<Value> str_split(RenderState&, const Value& self, CallArgs& args) { return str_split_impl(self, args, false); }
Result<Value> str_rsplit(RenderState&, const Value& self, CallArgs& args) { return str_split_impl(self, args, true); }

Result<Value> str_splitlines(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("splitlines", args, {{"keepends", Value(false)}});
  if (!bound) return std::unexpected(bound.error());
  ValueList items;
  for (auto& line : py_str::splitlines(self.text(), truthy((*bound)[0]))) {
    items.push_back(same_string_kind(self, std::move(line)));
  }
  return Value::list(std::move(items));
}

/// startswith/endswith: a prefix or a tuple of them, with optional character bounds.
Result<Value> str_affix(const Value& self, CallArgs& args, bool at_start) {
  const std::string_view name = at_start ? "startswith" : "endswith";
  auto bound = bind(name, args, {{"prefix", Value(), true}, {"start", Value::none()}, {"end", Value::none()}});
  if (!bound) return std::unexpected(bound.error());
  std::string text = self.text();
  if (!(*bound)[1].is_none() || !(*bound)[2].is_none()) {
    const auto length = static_cast<int64_t>(unicode::length(text));
    auto clamp = [&](const Value& v, int64_t fallback) -> Result<int64_t> {
      if (v.is_none()) return fallback;
      auto i = int_arg(name, v);
      if (!i) return i;
      int64_t index = *i < 0 ? *i + length : *i;
      return std::clamp<int64_t>(index, 0, length);
    };
    auto start = clamp((*bound)[1], 0);
    auto end = clamp((*bound)[2], length);
    if (!start || !end) return fail("{}() bounds must be integers", name);
    if (*start > length || *end < *start) return Value(false);
    text = py_str::slice(text, *start, *end, 1);
  }
  auto matches = [&](const Value& affix) -> Result<bool> {
    if (!affix.is_string()) {
      return fail("{} first arg must be str or a tuple of str, not {}", name, type_name(affix));
    }
    return at_start ? std::string_view(text).starts_with(affix.text()) : std::string_view(text).ends_with(affix.text());
  };
  const Value& affixes = (*bound)[0];
  if (affixes.is_seq(SeqKind::kTuple)) {
    for (const Value& affix : affixes.items()) {
      auto m = matches(affix);
      if (!m) return std::unexpected(m.error());
      if (*m) return Value(true);
    }
    return Value(false);
  }
  auto m = matches(affixes);
  if (!m) return std::unexpected(m.error());
  return Value(*m);
}

Result<Value> str_startswith(RenderState&, const Value& self, CallArgs& args) { return str_affix(self, args, true); }
Result<Value> str_endswith(RenderState&, const Value& self, CallArgs& args) { return str_affix(self, args, false); }

Result<Value> str_case(const Value& self, CallArgs& args, std::string_view name,
                       Result<std::string> (*convert)(std::string_view)) {
  auto bound = bind(name, args, {});
  if (!bound) return std::unexpected(bound.error());
  auto text = convert(self.text());
  if (!text) return std::unexpected(text.error());
  return same_string_kind(self, std::move(*text));
}

Result<Value> str_upper(RenderState&, const Value& self, CallArgs& args) {
  return str_case(self, args, "upper", unicode::to_upper);
}
Result<Value> str_lower(RenderState&, const Value& self, CallArgs& args) {
  return str_case(self, args, "lower", unicode::to_lower);
}
Result<Value> str_title(RenderState&, const Value& self, CallArgs& args) {
  return str_case(self, args, "title", unicode::to_title);
}
Result<Value> str_capitalize(RenderState&, const Value& self, CallArgs& args) {
  return str_case(self, args, "capitalize", unicode::capitalize);
}
Result<Value> str_swapcase(RenderState&, const Value& self, CallArgs& args) {
  return str_case(self, args, "swapcase", unicode::swap_case);
}

Result<Value> str_replace(RenderState& state, const Value& self, CallArgs& args) {
  auto bound = bind("replace", args, {{"old", Value(), true}, {"new", Value(), true}, {"count", Value(-1)}});
  if (!bound) return std::unexpected(bound.error());
  auto old_text = string_arg("replace", (*bound)[0]);
  auto new_text = string_arg("replace", (*bound)[1]);
  auto count = int_arg("replace", (*bound)[2]);
  if (!old_text) return std::unexpected(old_text.error());
  if (!new_text) return std::unexpected(new_text.error());
  if (!count) return std::unexpected(count.error());
  std::string out = py_str::replace(self.text(), *old_text, *new_text, *count);
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return same_string_kind(self, std::move(out));
}

Result<Value> str_find_impl(const Value& self, CallArgs& args, std::string_view name, bool reverse, bool raise) {
  auto bound = bind(name, args, {{"sub", Value(), true}});
  if (!bound) return std::unexpected(bound.error());
  auto sub = string_arg(name, (*bound)[0]);
  if (!sub) return std::unexpected(sub.error());
  const int64_t index = reverse ? py_str::rfind(self.text(), *sub) : py_str::find(self.text(), *sub);
  if (index < 0 && raise) return fail("substring not found");
  return Value(index);
}

Result<Value> str_find(RenderState&, const Value& self, CallArgs& args) {
  return str_find_impl(self, args, "find", false, false);
}
Result<Value> str_rfind(RenderState&, const Value& self, CallArgs& args) {
  return str_find_impl(self, args, "rfind", true, false);
}
Result<Value> str_index(RenderState&, const Value& self, CallArgs& args) {
  return str_find_impl(self, args, "index", false, true);
}
Result<Value> str_rindex(RenderState&, const Value& self, CallArgs& args) {
  return str_find_impl(self, args, "rindex", true, true);
}

Result<Value> str_count(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("count", args, {{"sub", Value(), true}});
  if (!bound) return std::unexpected(bound.error());
  auto sub = string_arg("count", (*bound)[0]);
  if (!sub) return std::unexpected(sub.error());
  return Value(py_str::count(self.text(), *sub));
}

Result<Value> str_join(RenderState& state, const Value& self, CallArgs& args) {
  auto bound = bind("join", args, {{"iterable", Value(), true}});
  if (!bound) return std::unexpected(bound.error());
  auto items = iterate((*bound)[0]);
  if (!items) return std::unexpected(items.error());
  std::string out;
  for (size_t i = 0; i < items->size(); ++i) {
    const Value& item = (*items)[i];
    if (!item.is_string()) return fail("sequence item {}: expected str instance, {} found", i, type_name(item));
    if (i > 0) out += self.text();
    out += item.text();
  }
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return Value(std::move(out));
}

Result<Value> str_affix_remove(const Value& self, CallArgs& args, bool prefix) {
  const std::string_view name = prefix ? "removeprefix" : "removesuffix";
  auto bound = bind(name, args, {{"affix", Value(), true}});
  if (!bound) return std::unexpected(bound.error());
  auto affix = string_arg(name, (*bound)[0]);
  if (!affix) return std::unexpected(affix.error());
  std::string_view text = self.text();
  if (prefix && text.starts_with(*affix)) text.remove_prefix(affix->size());
  if (!prefix && text.ends_with(*affix)) text.remove_suffix(affix->size());
  return same_string_kind(self, std::string(text));
}

Result<Value> str_removeprefix(RenderState&, const Value& self, CallArgs& args) {
  return str_affix_remove(self, args, true);
}
Result<Value> str_removesuffix(RenderState&, const Value& self, CallArgs& args) {
  return str_affix_remove(self, args, false);
}

/// isdigit/isalpha/... are exact for ASCII; other characters need Unicode tables this file does not carry.
Result<Value> str_class(const Value& self, CallArgs& args, std::string_view name, bool (*ascii_test)(unsigned char)) {
  auto bound = bind(name, args, {});
  if (!bound) return std::unexpected(bound.error());
  const std::string& text = self.text();
  if (!unicode::is_ascii(text)) return fail("str.{}() on non-ASCII text is not supported", name);
  if (text.empty()) return Value(false);
  return Value(
      std::all_of(text.begin(), text.end(), [&](char c) { return ascii_test(static_cast<unsigned char>(c)); }));
}

bool ascii_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool ascii_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool ascii_alnum(unsigned char c) { return ascii_digit(c) || ascii_alpha(c); }

Result<Value> str_isdigit(RenderState&, const Value& self, CallArgs& args) {
  return str_class(self, args, "isdigit", ascii_digit);
}
Result<Value> str_isnumeric(RenderState&, const Value& self, CallArgs& args) {
  return str_class(self, args, "isnumeric", ascii_digit);
}
Result<Value> str_isdecimal(RenderState&, const Value& self, CallArgs& args) {
  return str_class(self, args, "isdecimal", ascii_digit);
}
Result<Value> str_isalpha(RenderState&, const Value& self, CallArgs& args) {
  return str_class(self, args, "isalpha", ascii_alpha);
}
Result<Value> str_isalnum(RenderState&, const Value& self, CallArgs& args) {
  return str_class(self, args, "isalnum", ascii_alnum);
}

Result<Value> str_isspace(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("isspace", args, {});
  if (!bound) return std::unexpected(bound.error());
  const std::u32string cps = unicode::to_code_points(self.text());
  return Value(!cps.empty() && std::all_of(cps.begin(), cps.end(), unicode::is_space));
}

Result<Value> str_case_test(const Value& self, CallArgs& args, std::string_view name,
                            Result<bool> (*test)(std::string_view)) {
  auto bound = bind(name, args, {});
  if (!bound) return std::unexpected(bound.error());
  auto r = test(self.text());
  if (!r) return std::unexpected(r.error());
  return Value(*r);
}

Result<Value> str_islower(RenderState&, const Value& self, CallArgs& args) {
  return str_case_test(self, args, "islower", unicode::is_lower);
}
Result<Value> str_isupper(RenderState&, const Value& self, CallArgs& args) {
  return str_case_test(self, args, "isupper", unicode::is_upper);
}

Result<Value> str_pad(const Value& self, CallArgs& args, std::string_view name, int alignment) {
  auto bound = bind(name, args, {{"width", Value(), true}, {"fillchar", Value(" ")}});
  if (!bound) return std::unexpected(bound.error());
  auto width = int_arg(name, (*bound)[0]);
  if (!width) return std::unexpected(width.error());
  const Value& fill = (*bound)[1];
  if (!fill.is_string() || unicode::length(fill.text()) != 1) {
    return fail("The fill character must be exactly one character long");
  }
  size_t pos = 0;
  const char32_t fill_char = unicode::next_code_point(fill.text(), pos);
  return same_string_kind(self, py_str::pad(self.text(), *width, fill_char, alignment));
}

Result<Value> str_center(RenderState&, const Value& self, CallArgs& args) { return str_pad(self, args, "center", 0); }
Result<Value> str_ljust(RenderState&, const Value& self, CallArgs& args) { return str_pad(self, args, "ljust", -1); }
Result<Value> str_rjust(RenderState&, const Value& self, CallArgs& args) { return str_pad(self, args, "rjust", 1); }

Result<Value> str_format(RenderState& state, const Value& self, CallArgs& args);  // below

constexpr Method kStrMethods[] = {
    {"strip", str_strip},
    {"lstrip", str_lstrip},
    {"rstrip", str_rstrip},
    {"split", str_split},
    {"rsplit", str_rsplit},
    {"splitlines", str_splitlines},
    {"startswith", str_startswith},
    {"endswith", str_endswith},
    {"upper", str_upper},
    {"lower", str_lower},
    {"title", str_title},
    {"capitalize", str_capitalize},
    {"swapcase", str_swapcase},
    {"replace", str_replace},
    {"find", str_find},
    {"rfind", str_rfind},
    {"index", str_index},
    {"rindex", str_rindex},
    {"count", str_count},
    {"join", str_join},
    {"removeprefix", str_removeprefix},
    {"removesuffix", str_removesuffix},
    {"isdigit", str_isdigit},
    {"isnumeric", str_isnumeric},
    {"isdecimal", str_isdecimal},
    {"isalpha", str_isalpha},
    {"isalnum", str_isalnum},
    {"isspace", str_isspace},
    {"islower", str_islower},
    {"isupper", str_isupper},
    {"center", str_center},
    {"ljust", str_ljust},
    {"rjust", str_rjust},
    {"format", str_format},
};

/// Python str attributes not implemented here: reading one fails instead of becoming undefined.
constexpr std::string_view kStrUnsupported[] = {
    "casefold", "encode",    "expandtabs", "format_map", "isascii",   "isidentifier", "isprintable",
    "istitle",  "maketrans", "partition",  "rpartition", "translate", "zfill",
};

// ---- str.format, through jinja2's sandboxed formatter: {} {0} {name} {{ }} and !s / !r ----

Result<Value> str_format(RenderState& state, const Value& self, CallArgs& args) {
  const std::string& format = self.text();
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return fail("Single '}}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) return fail("Single '{{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    char conversion = 's';
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size() || (field[bang + 1] != 's' && field[bang + 1] != 'r')) {
        return fail("unsupported conversion in format field '{{{}}}'", field);
      }
      conversion = field[bang + 1];
      field.resize(bang);
    }
    if (field.find_first_of(":.[") != std::string::npos) {
      return fail("unsupported format field '{{{}}}' (format specs and attribute lookups are not supported)", field);
    }
    const Value* value = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field);
      if (index >= args.positional.size())
        return fail("Replacement index {} out of range for positional args tuple", index);
      value = &args.positional[index];
    } else {
      for (const auto& [key, v] : args.keywords) {
        if (key == field) value = &v;
      }
      if (value == nullptr) return fail("KeyError: '{}'", field);
    }
    auto text = conversion == 's' ? to_str(*value) : to_repr(*value);
    if (!text) return std::unexpected(text.error());
    out += *text;
  }
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return Value(std::move(out));
}

// ---- dict and list methods ----

Result<Value> dict_view(const Value& self, CallArgs& args, std::string_view name, SeqKind kind) {
  auto bound = bind(name, args, {});
  if (!bound) return std::unexpected(bound.error());
  ValueList items;
  for (const auto& [key, value] : self.dict().entries) {
    if (kind == SeqKind::kDictKeys)
      items.push_back(key);
    else if (kind == SeqKind::kDictValues)
      items.push_back(value);
    else
      items.push_back(Value::list({key, value}, SeqKind::kTuple));
  }
  return Value::list(std::move(items), kind);
}

Result<Value> dict_items(RenderState&, const Value& self, CallArgs& args) {
  return dict_view(self, args, "items", SeqKind::kDictItems);
}
Result<Value> dict_keys(RenderState&, const Value& self, CallArgs& args) {
  return dict_view(self, args, "keys", SeqKind::kDictKeys);
}
Result<Value> dict_values(RenderState&, const Value& self, CallArgs& args) {
  return dict_view(self, args, "values", SeqKind::kDictValues);
}

Result<Value> dict_get(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("get", args, {{"key", Value(), true}, {"default", Value::none()}});
  if (!bound) return std::unexpected(bound.error());
  const Value* value = self.dict().find((*bound)[0]);
  return value != nullptr ? *value : (*bound)[1];
}

Result<Value> dict_copy(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("copy", args, {});
  if (!bound) return std::unexpected(bound.error());
  return Value::dict(self.dict());
}

constexpr Method kDictMethods[] = {
    {"items", dict_items}, {"keys", dict_keys}, {"values", dict_values}, {"get", dict_get}, {"copy", dict_copy},
};
constexpr std::string_view kDictUnsafe[] = {"clear", "pop", "popitem", "setdefault", "update"};

Result<Value> list_index(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("index", args, {{"value", Value(), true}});
  if (!bound) return std::unexpected(bound.error());
  const ValueList& items = self.items();
  for (size_t i = 0; i < items.size(); ++i) {
    if (equals(items[i], (*bound)[0])) return Value(static_cast<int64_t>(i));
  }
  auto text = to_repr((*bound)[0]);
  return fail("{} is not in list", text ? *text : "value");
}

Result<Value> list_count(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("count", args, {{"value", Value(), true}});
  if (!bound) return std::unexpected(bound.error());
  const ValueList& items = self.items();
  return Value(static_cast<int64_t>(
      std::count_if(items.begin(), items.end(), [&](const Value& v) { return equals(v, (*bound)[0]); })));
}

Result<Value> list_copy(RenderState&, const Value& self, CallArgs& args) {
  auto bound = bind("copy", args, {});
  if (!bound) return std::unexpected(bound.error());
  return Value::list(self.items());
}

constexpr Method kListMethods[] = {{"index", list_index}, {"count", list_count}, {"copy", list_copy}};
constexpr std::string_view kListUnsafe[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};

/// Attributes of Python numbers; not implemented, so reading one fails rather than being undefined.
constexpr std::string_view kNumberAttributes[] = {
    "real",      "imag",     "numerator",        "denominator", "conjugate", "bit_length",
    "bit_count", "to_bytes", "as_integer_ratio", "is_integer",  "hex"};

template <size_t N>
const Method* find_method(const Method (&table)[N], std::string_view name) {
  for (const Method& method : table) {
    if (method.name == name) return &method;
  }
  return nullptr;
}

Result<Value> loop_attribute(const Value& loop, std::string_view name) {
  const LoopData& data = loop.loop();
  const auto index0 = static_cast<int64_t>(data.index0);
  const auto length = static_cast<int64_t>(data.items->size());
  if (name == "index") return Value(index0 + 1);
  if (name == "index0") return Value(index0);
  if (name == "revindex") return Value(length - index0);
  if (name == "revindex0") return Value(length - index0 - 1);
  if (name == "first") return Value(index0 == 0);
  if (name == "last") return Value(index0 == length - 1);
  if (name == "length") return Value(length);
  if (name == "depth") return Value(1);
  if (name == "depth0") return Value(0);
  if (name == "previtem") {
    return index0 > 0 ? (*data.items)[data.index0 - 1] : Value::undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return index0 + 1 < length ? (*data.items)[data.index0 + 1] : Value::undefined("there is no next item");
  }
  if (name == "cycle") {
    const size_t position = data.index0;
    return Value::function("cycle", [position](CallArgs& args) -> Result<Value> {
      if (args.positional.empty()) return fail("no items for cycling given");
      return args.positional[position % args.positional.size()];
    });
  }
  if (name == "changed") return fail("loop.changed() is not supported");
  return missing_attribute(loop, name);
}

/// The Python attribute `name` of `object`, or an undefined value when it has none (`found` false).
Result<Value> python_attribute(RenderState& state, const Value& object, std::string_view name, bool& found) {
  found = true;
  if (name.starts_with("__")) return unsafe_attribute(object, name);
  switch (object.kind()) {
    case ValueKind::kString:
      if (const Method* m = find_method(kStrMethods, name)) return bind_method(state, object, *m);
      if (contains(kStrUnsupported, name)) return fail("str.{}() is not supported", name);
      break;
    case ValueKind::kDict:
      if (const Method* m = find_method(kDictMethods, name)) return bind_method(state, object, *m);
      if (contains(kDictUnsafe, name)) return unsafe_attribute(object, name);
      if (name == "fromkeys") return fail("dict.fromkeys() is not supported");
      break;
    case ValueKind::kList:
      if (object.is_seq(SeqKind::kList) || object.is_seq(SeqKind::kTuple)) {
        const Method* m = find_method(kListMethods, name);
        if (m != nullptr && (object.is_seq(SeqKind::kList) || name != "copy")) return bind_method(state, object, *m);
        if (object.is_seq(SeqKind::kList) && contains(kListUnsafe, name)) return unsafe_attribute(object, name);
      }
      break;
    case ValueKind::kNamespace:
      if (const Value* value = object.namespace_attributes().find(name)) return *value;
      break;
    case ValueKind::kLoop: return loop_attribute(object, name);
    case ValueKind::kInt:
    case ValueKind::kFloat:
    case ValueKind::kBool:
      if (contains(kNumberAttributes, name)) return fail("the number attribute '{}' is not supported", name);
      break;
    default: break;
  }
  found = false;
  return Value();
}

/// Normalises a Python index against `length`; false when out of range.
bool normalize_index(int64_t& index, int64_t length) {
  if (index < 0) index += length;
  return index >= 0 && index < length;
}

}  // namespace

Result<Value> get_attribute(RenderState& state, const Value& object, std::string_view name) {
  if (object.is_undefined()) return fail("{}", object.text());
  bool found = false;
  auto attribute = python_attribute(state, object, name, found);
  if (!attribute || found) return attribute;
  if (object.is_dict()) {
    if (const Value* value = object.dict().find(name)) return *value;
  }
  return missing_attribute(object, name);
}

Result<Value> get_item(RenderState& state, const Value& object, const Value& key) {
  if (object.is_undefined()) return fail("{}", object.text());
  const bool integer_key = key.is_int() || key.is_bool();
  switch (object.kind()) {
    case ValueKind::kDict:
      if (const Value* value = object.dict().find(key)) return *value;
      break;
    case ValueKind::kList:
      if (integer_key && (object.is_seq(SeqKind::kList) || object.is_seq(SeqKind::kTuple))) {
        int64_t index = key.as_int();
        if (normalize_index(index, static_cast<int64_t>(object.items().size()))) {
          return object.items()[static_cast<size_t>(index)];
        }
        return missing_element(object, key);
      }
      break;
    case ValueKind::kString:
      if (integer_key) {
        int64_t index = key.as_int();
        if (normalize_index(index, static_cast<int64_t>(unicode::length(object.text())))) {
          return same_string_kind(object, py_str::char_at(object.text(), index));
        }
        return missing_element(object, key);
      }
      break;
    default: break;
  }
  if (!key.is_string()) return missing_element(object, key);
  bool found = false;
  auto attribute = python_attribute(state, object, key.text(), found);
  if (!attribute || found) return attribute;
  return missing_attribute(object, key.text());
}

Result<Value> get_slice(RenderState& state, const Value& object, const Value& start, const Value& stop,
                        const Value& step) {
  // jinja2 compiles slices to a plain Python `obj[a:b:c]`, bypassing the sandbox's getitem, so
  // unsliceable objects raise instead of becoming undefined.
  if (object.is_undefined()) return fail("{}", object.text());
  const bool is_text = object.is_string();
  const bool is_sequence = object.is_seq(SeqKind::kList) || object.is_seq(SeqKind::kTuple);
  if (object.is_dict()) return fail("unhashable type: 'slice'");
  if (!is_text && !is_sequence) return fail("'{}' object is not subscriptable", type_name(object));
  for (const Value* bound : {&start, &stop, &step}) {
    if (!bound->is_none() && !bound->is_int() && !bound->is_bool()) {
      return fail("slice indices must be integers or None or have an __index__ method");
    }
  }
  const auto length = static_cast<int64_t>(is_text ? unicode::length(object.text()) : object.items().size());
  const int64_t step_value = step.is_int() || step.is_bool() ? step.as_int() : 1;
  if (step_value == 0) return fail("slice step cannot be zero");
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](const Value& bound, int64_t when_missing) {
    if (!bound.is_int() && !bound.is_bool()) return when_missing;
    int64_t v = bound.as_int();
    if (v < 0) {
      v += length;
      if (v < 0) v = step_value < 0 ? -1 : 0;
    } else if (v >= length) {
      v = step_value < 0 ? length - 1 : length;
    }
    return v;
  };
  const int64_t first = adjust(start, step_value < 0 ? length - 1 : 0);
  const int64_t last = adjust(stop, step_value < 0 ? -1 : length);
  if (is_text) {
    std::string out = py_str::slice(object.text(), first, last, step_value);
    if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
    return same_string_kind(object, std::move(out));
  }
  ValueList items;
  for (int64_t i = first; step_value > 0 ? i < last : i > last; i += step_value) {
    items.push_back(object.items()[static_cast<size_t>(i)]);
  }
  return Value::list(std::move(items), object.list().kind);
}

}  // namespace tern::chat
