#include "tokenizer/template/value.h"

#include <fmt/format.h>

#include <cmath>

#include "tokenizer/template/python_text.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

const Value* DictData::find(const Value& key) const {
  for (const auto& [k, v] : entries) {
    if (equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* DictData::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.text() == key) return &v;
  }
  return nullptr;
}

void DictData::set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Value::undefined(std::string message) {
  Value v;
  v.text_ = std::move(message);
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = ValueKind::kNone;
  return v;
}

Value Value::markup(std::string text) {
  Value v(std::move(text));
  v.markup_ = true;
  return v;
}

Value Value::list(ValueList items, SeqKind kind) {
  Value v;
  v.kind_ = ValueKind::kList;
  v.object_ = std::make_shared<ListData>(ListData{std::move(items), kind, 0});
  return v;
}

Value Value::dict(DictData data) {
  Value v;
  v.kind_ = ValueKind::kDict;
  v.object_ = std::make_shared<DictData>(std::move(data));
  return v;
}

Value Value::make_namespace(DictData attributes) {
  Value v;
  v.kind_ = ValueKind::kNamespace;
  v.object_ = std::make_shared<DictData>(std::move(attributes));
  return v;
}

Value Value::function(std::string name, std::function<Result<Value>(CallArgs&)> call) {
  Value v;
  v.kind_ = ValueKind::kFunction;
  v.object_ = std::make_shared<Function>(Function{std::move(name), std::move(call)});
  return v;
}

Value Value::loop(std::shared_ptr<const ValueList> items, size_t index0) {
  Value v;
  v.kind_ = ValueKind::kLoop;
  v.object_ = std::make_shared<LoopData>(LoopData{std::move(items), index0});
  return v;
}

bool truthy(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: return false;
    case ValueKind::kBool: return value.as_bool();
    case ValueKind::kInt: return value.as_int() != 0;
    case ValueKind::kFloat: return value.as_double() != 0.0;
    case ValueKind::kString: return !value.text().empty();
    case ValueKind::kList: return value.list().kind == SeqKind::kGenerator || !value.items().empty();
    case ValueKind::kDict: return !value.dict().entries.empty();
    default: return true;
  }
}

namespace {

/// Exact comparison of two numbers, as Python does between int and float.
int compare_numbers(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) {
    return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
  }
  const long double x = a.is_float() ? a.as_double() : static_cast<long double>(a.as_int());
  const long double y = b.is_float() ? b.as_double() : static_cast<long double>(b.as_int());
  return x < y ? -1 : x > y ? 1 : 0;
}

bool same_sequence_family(const Value& a, const Value& b) {
  const SeqKind x = a.list().kind;
  const SeqKind y = b.list().kind;
  return (x == SeqKind::kList && y == SeqKind::kList) || (x == SeqKind::kTuple && y == SeqKind::kTuple);
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if ((a.is_float() && std::isnan(a.as_double())) || (b.is_float() && std::isnan(b.as_double()))) return false;
    return compare_numbers(a, b) == 0;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: return true;
    case ValueKind::kString: return a.text() == b.text();
    case ValueKind::kList: {
      if (!same_sequence_family(a, b)) return a.identity() == b.identity();
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!equals(x[i], y[i])) return false;
      }
      return true;
    }
    case ValueKind::kDict: {
      const auto& x = a.dict().entries;
      if (x.size() != b.dict().entries.size()) return false;
      for (const auto& [key, value] : x) {
        const Value* other = b.dict().find(key);
        if (other == nullptr || !equals(value, *other)) return false;
      }
      return true;
    }
    case ValueKind::kNamespace:
    case ValueKind::kFunction:
    case ValueKind::kLoop: return a.identity() == b.identity();
    default: return false;
  }
}

Result<int> compare(const Value& a, const Value& b, std::string_view op) {
  // jinja2's Undefined raises its own error from every ordering comparison.
  if (a.is_undefined()) return fail("{}", a.text());
  if (b.is_undefined()) return fail("{}", b.text());
  if (a.is_number() && b.is_number()) return compare_numbers(a, b);
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code-point order, which is how Python orders str.
    const int c = a.text().compare(b.text());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && same_sequence_family(a, b)) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return fail("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b));
}

namespace {

Result<std::string> join_reprs(const ValueList& items, std::string_view open, std::string_view close,
                               bool trailing_comma_if_single) {
  std::string out(open);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    auto item = to_repr(items[i]);
    if (!item) return item;
    out += *item;
  }
  if (trailing_comma_if_single && items.size() == 1) out += ",";
  out += close;
  return out;
}

Result<std::string> dict_repr(const DictData& dict) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : dict.entries) {
    if (!first) out += ", ";
    first = false;
    auto k = to_repr(key);
    if (!k) return k;
    auto v = to_repr(value);
    if (!v) return v;
    out += *k;
    out += ": ";
    out += *v;
  }
  out += "}";
  return out;
}

}  // namespace

Result<std::string> to_repr(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined: return std::string("Undefined");
    case ValueKind::kNone: return std::string("None");
    case ValueKind::kBool: return std::string(value.as_bool() ? "True" : "False");
    case ValueKind::kInt: return std::to_string(value.as_int());
    case ValueKind::kFloat: return float_repr(value.as_double());
    case ValueKind::kString:
      return value.is_markup() ? fmt::format("Markup({})", string_repr(value.text())) : string_repr(value.text());
    case ValueKind::kList:
      switch (value.list().kind) {
        case SeqKind::kList: return join_reprs(value.items(), "[", "]", false);
        case SeqKind::kTuple: return join_reprs(value.items(), "(", ")", true);
        case SeqKind::kDictKeys: return join_reprs(value.items(), "dict_keys([", "])", false);
        case SeqKind::kDictValues: return join_reprs(value.items(), "dict_values([", "])", false);
        case SeqKind::kDictItems: return join_reprs(value.items(), "dict_items([", "])", false);
        case SeqKind::kGenerator:
          return fail("printing a generator (the result of select/map/items/...) is not supported; add |list");
      }
      break;
    case ValueKind::kDict: return dict_repr(value.dict());
    case ValueKind::kNamespace: {
      auto inner = dict_repr(value.namespace_attributes());
      if (!inner) return inner;
      return fmt::format("<Namespace {}>", *inner);
    }
    case ValueKind::kLoop: {
      const LoopData& loop = value.loop();
      return fmt::format("<LoopContext {}/{}>", loop.index0 + 1, loop.items->size());
    }
    case ValueKind::kFunction: break;
  }
  return fail("printing {} '{}' is not supported", type_name(value), value.function().name);
}

Result<std::string> to_str(const Value& value) {
  if (value.is_string()) return value.text();
  if (value.is_undefined()) return std::string();
  return to_repr(value);
}

std::string type_name(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined: return "Undefined";
    case ValueKind::kNone: return "NoneType";
    case ValueKind::kBool: return "bool";
    case ValueKind::kInt: return "int";
    case ValueKind::kFloat: return "float";
    case ValueKind::kString: return value.is_markup() ? "Markup" : "str";
    case ValueKind::kList:
      switch (value.list().kind) {
        case SeqKind::kList: return "list";
        case SeqKind::kTuple: return "tuple";
        case SeqKind::kGenerator: return "generator";
        case SeqKind::kDictKeys: return "dict_keys";
        case SeqKind::kDictValues: return "dict_values";
        case SeqKind::kDictItems: return "dict_items";
      }
      return "list";
    case ValueKind::kDict: return "dict";
    case ValueKind::kNamespace: return "Namespace";
    case ValueKind::kFunction: return "function";
    case ValueKind::kLoop: return "LoopContext";
  }
  return "object";
}

std::string object_description(const Value& value) {
  // jinja2's object_type_repr: builtins print bare, other classes with their module.
  if (value.is_none()) return "None";
  if (value.is_markup()) return "markupsafe.Markup object";
  if (value.is_namespace()) return "jinja2.utils.Namespace object";
  if (value.is_loop()) return "jinja2.runtime.LoopContext object";
  return type_name(value) + " object";
}

Result<ValueList> iterate(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined: return ValueList{};
    case ValueKind::kString: {
      ValueList out;
      const std::string& text = value.text();
      size_t pos = 0;
      while (pos < text.size()) {
        const size_t start = pos;
        unicode::next_code_point(text, pos);
        out.emplace_back(text.substr(start, pos - start));
      }
      return out;
    }
    case ValueKind::kList: {
      ListData& data = value.list_state();
      if (data.kind == SeqKind::kGenerator) {
        ValueList rest(data.items.begin() + static_cast<std::ptrdiff_t>(data.consumed), data.items.end());
        data.consumed = data.items.size();
        return rest;
      }
      return data.items;
    }
    case ValueKind::kDict: {
      ValueList keys;
      keys.reserve(value.dict().entries.size());
      for (const auto& entry : value.dict().entries) keys.push_back(entry.first);
      return keys;
    }
    default: return fail("'{}' object is not iterable", type_name(value));
  }
}

Result<int64_t> length(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined: return 0;
    case ValueKind::kString: return static_cast<int64_t>(unicode::length(value.text()));
    case ValueKind::kList:
      if (value.list().kind == SeqKind::kGenerator) break;
      return static_cast<int64_t>(value.items().size());
    case ValueKind::kDict: return static_cast<int64_t>(value.dict().entries.size());
    default: break;
  }
  return fail("object of type '{}' has no len()", type_name(value));
}

Result<std::string> hash_key(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kNone: return std::string("N");
    case ValueKind::kUndefined: return std::string("U");  // jinja2's Undefined hashes by its type
    case ValueKind::kBool:
    case ValueKind::kInt: return fmt::format("n{}", value.as_int());
    case ValueKind::kFloat: {
      const double d = value.as_double();
      if (std::floor(d) == d && std::fabs(d) < 9.2e18) return fmt::format("n{}", static_cast<int64_t>(d));
      return fmt::format("f{}", float_repr(d));
    }
    case ValueKind::kString: return fmt::format("s{}", value.text());
    case ValueKind::kList:
      if (value.list().kind == SeqKind::kTuple) {
        std::string out = "t(";
        for (const Value& item : value.items()) {
          auto key = hash_key(item);
          if (!key) return key;
          out += fmt::format("{}:{}", key->size(), *key);
        }
        return out + ")";
      }
      break;
    default: break;
  }
  return fail("unhashable type: '{}'", type_name(value));
}

}  // namespace tern::chat
