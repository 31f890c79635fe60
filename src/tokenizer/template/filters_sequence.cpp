// jinja2's filters over sequences and mappings: length, join, first/last, map/select/reject and their
// attribute forms, unique, sort, dictsort, min/max, sum, reverse, batch, items.

#include <algorithm>
#include <string>

#include "tokenizer/template/builtins.h"
#include "tokenizer/template/operators.h"
#include "tokenizer/template/py_str.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

#define TRY(decl, expr)                                              \
  auto decl##_result = (expr);                                       \
  if (!decl##_result) return std::unexpected(decl##_result.error()); \
  auto& decl = *decl##_result

Value generator(ValueList items) { return Value::list(std::move(items), SeqKind::kGenerator); }

/// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then index 0, each with getitem semantics;
/// `default_value` (map's default=) replaces an undefined result after each step.
Result<Value> lookup_path(RenderState& state, Value item, const Value& attribute, const Value* default_value) {
  std::vector<Value> parts;
  if (attribute.is_string()) {
    for (auto& part : py_str::split(attribute.text(), std::string_view("."), -1)) {
      const bool digits =
          !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      parts.emplace_back(digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(std::move(part)));
    }
  } else if (!attribute.is_none() && !attribute.is_undefined()) {
    parts.push_back(attribute);
  }
  for (const Value& part : parts) {
    auto next = get_item(state, item, part);
    if (!next) return next;
    item = std::move(*next);
    if (default_value != nullptr && !default_value->is_none() && item.is_undefined()) item = *default_value;
  }
  return item;
}

/// jinja2's ignore_case postprocessing: strings compare lowercased unless case_sensitive.
Result<Value> ignore_case(const Value& value, bool case_sensitive) {
  if (case_sensitive || !value.is_string()) return value;
  auto lower = unicode::to_lower(value.text());
  if (!lower) return std::unexpected(lower.error());
  return Value(std::move(*lower));
}

Result<bool> call_test(RenderState& state, const Value& name, const Value& item, const CallArgs& extra) {
  if (!name.is_string()) return fail("test name must be a string, not {}", type_name(name));
  const TestSpec* spec = find_test(name.text());
  if (spec == nullptr) return fail("No test named '{}'.", name.text());
  CallArgs args = extra;
  return spec->fn(state, item, args);
}

/// Stable sort of `items` by `keys` (parallel vectors), Python-style: reverse keeps equal items in
/// their original order. Fails when keys do not order.
Result<ValueList> sort_by_keys(ValueList items, const ValueList& keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  Result<void> status;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (!status) return false;
    auto c = reverse ? compare(keys[b], keys[a]) : compare(keys[a], keys[b]);
    if (!c) {
      status = std::unexpected(c.error());
      return false;
    }
    return *c < 0;
  });
  if (!status) return std::unexpected(status.error());
  ValueList out;
  out.reserve(items.size());
  for (size_t i : order) out.push_back(std::move(items[i]));
  return out;
}

}  // namespace

Result<Value> filter_length(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "length");
  TRY(n, length(value));
  return Value(n);
}

Result<Value> filter_default(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "default", {"default_value", Value("")}, {"boolean", Value(false)});
  if (value.is_undefined() || (truthy(bound[1]) && !truthy(value))) return bound[0];
  return value;
}

Result<Value> filter_join(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "join", {"d", Value("")}, {"attribute", Value::none()});
  TRY(separator, to_str(bound[0]));
  TRY(items, iterate(value));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!bound[1].is_none()) {
      TRY(looked_up, lookup_path(state, item, bound[1], nullptr));
      item = looked_up;
    }
    TRY(text, to_str(item));
    if (i > 0) out += separator;
    out += text;
  }
  if (auto r = state.charge_bytes(out.size()); !r) return std::unexpected(r.error());
  return Value(std::move(out));
}

Result<Value> filter_first(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "first");
  if (value.is_seq(SeqKind::kGenerator)) {
    ListData& data = value.list_state();
    if (data.consumed < data.items.size()) return data.items[data.consumed++];
    return Value::undefined("No first item, sequence was empty.");
  }
  TRY(items, iterate(value));
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Result<Value> filter_last(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "last");
  // reversed() needs a sequence (str, list, tuple, dict, dict views; jinja2's Undefined qualifies).
  if (value.is_seq(SeqKind::kGenerator) ||
      !(value.is_string() || value.is_list() || value.is_dict() || value.is_undefined())) {
    return fail("'{}' object is not reversible", type_name(value));
  }
  TRY(items, iterate(value));
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Result<Value> filter_list(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "list");
  TRY(items, iterate(value));
  return Value::list(std::move(items));
}

Result<Value> filter_items(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "items");
  if (value.is_undefined()) return generator({});
  if (!value.is_dict()) return fail("Can only get item pairs from a mapping.");
  ValueList pairs;
  for (const auto& [key, item] : value.dict().entries) pairs.push_back(Value::list({key, item}, SeqKind::kTuple));
  return generator(std::move(pairs));
}

Result<Value> filter_map(RenderState& state, const Value& value, CallArgs& args) {
  // jinja2's map, select, reject, selectattr and rejectattr start with `if value:`, so a falsy
  // value of any type (none, 0, "") yields nothing instead of failing to iterate.
  if (!truthy(value)) return generator({});
  TRY(items, iterate(value));
  ValueList out;
  out.reserve(items.size());
  if (args.positional.empty()) {
    Value attribute;
    Value default_value = Value::none();
    bool has_attribute = false;
    for (auto& [key, v] : args.keywords) {
      if (key == "attribute") {
        attribute = v;
        has_attribute = true;
      } else if (key == "default") {
        default_value = v;
      } else {
        return fail("Unexpected keyword argument '{}'", key);
      }
    }
    if (!has_attribute) return fail("map requires a filter argument");
    for (const Value& item : items) {
      TRY(mapped, lookup_path(state, item, attribute, &default_value));
      out.push_back(mapped);
    }
    return generator(std::move(out));
  }
  const Value& name = args.positional.front();
  if (!name.is_string()) return fail("map: filter name must be a string");
  const FilterSpec* spec = find_filter(name.text());
  if (spec == nullptr) return fail("No filter named '{}'.", name.text());
  CallArgs extra;
  extra.positional.assign(args.positional.begin() + 1, args.positional.end());
  extra.keywords = args.keywords;
  for (const Value& item : items) {
    CallArgs call = extra;
    TRY(mapped, spec->fn(state, item, call));
    out.push_back(mapped);
  }
  return generator(std::move(out));
}

namespace {

Result<Value> select_or_reject(RenderState& state, const Value& value, CallArgs& args, bool keep_matching,
                               bool lookup_attribute) {
  if (!truthy(value)) return generator({});
  const ValueList& positional = args.positional;
  size_t offset = 0;
  Value attribute;
  if (lookup_attribute) {
    if (positional.empty()) return fail("Missing parameter for attribute name");
    attribute = positional[0];
    offset = 1;
  }
  const bool has_test = positional.size() > offset;
  Value test_name = has_test ? positional[offset] : Value();
  CallArgs extra;
  if (has_test) extra.positional.assign(positional.begin() + static_cast<std::ptrdiff_t>(offset) + 1, positional.end());
  extra.keywords = args.keywords;
  TRY(items, iterate(value));
  ValueList out;
  for (const Value& item : items) {
    Value subject = item;
    if (lookup_attribute) {
      TRY(looked_up, lookup_path(state, item, attribute, nullptr));
      subject = looked_up;
    }
    bool matches = truthy(subject);
    if (has_test) {
      TRY(result, call_test(state, test_name, subject, extra));
      matches = result;
    }
    if (matches == keep_matching) out.push_back(item);
  }
  return generator(std::move(out));
}

}  // namespace

Result<Value> filter_select(RenderState& state, const Value& value, CallArgs& args) {
  return select_or_reject(state, value, args, true, false);
}
Result<Value> filter_reject(RenderState& state, const Value& value, CallArgs& args) {
  return select_or_reject(state, value, args, false, false);
}
Result<Value> filter_selectattr(RenderState& state, const Value& value, CallArgs& args) {
  return select_or_reject(state, value, args, true, true);
}
Result<Value> filter_rejectattr(RenderState& state, const Value& value, CallArgs& args) {
  return select_or_reject(state, value, args, false, true);
}

Result<Value> filter_unique(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "unique", {"case_sensitive", Value(false)}, {"attribute", Value::none()});
  TRY(items, iterate(value));
  std::vector<std::string> seen;
  ValueList out;
  for (const Value& item : items) {
    TRY(looked_up, lookup_path(state, item, bound[1], nullptr));
    TRY(key_value, ignore_case(looked_up, truthy(bound[0])));
    TRY(key, hash_key(key_value));
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return generator(std::move(out));
}

Result<Value> filter_sort(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "sort", {"reverse", Value(false)}, {"case_sensitive", Value(false)}, {"attribute", Value::none()});
  TRY(items, iterate(value));
  // make_multi_attrgetter: "a,b" sorts by a then b; the key is the list of looked-up values.
  std::vector<Value> attributes;
  if (bound[2].is_string()) {
    for (auto& part : py_str::split(bound[2].text(), std::string_view(","), -1))
      attributes.emplace_back(std::move(part));
  } else {
    attributes.push_back(bound[2]);
  }
  ValueList keys;
  for (const Value& item : items) {
    ValueList key;
    for (const Value& attribute : attributes) {
      TRY(looked_up, lookup_path(state, item, attribute, nullptr));
      TRY(folded, ignore_case(looked_up, truthy(bound[1])));
      key.push_back(folded);
    }
    keys.push_back(Value::list(std::move(key)));
  }
  TRY(sorted, sort_by_keys(std::move(items), keys, truthy(bound[0])));
  return Value::list(std::move(sorted));
}

Result<Value> filter_dictsort(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "dictsort", {"case_sensitive", Value(false)}, {"by", Value("key")}, {"reverse", Value(false)});
  if (value.is_undefined()) return fail("{}", value.text());
  if (!value.is_dict()) return fail("'{}' object has no attribute 'items'", type_name(value));
  size_t position;
  if (bound[1].is_string() && bound[1].text() == "key") {
    position = 0;
  } else if (bound[1].is_string() && bound[1].text() == "value") {
    position = 1;
  } else {
    return fail("You can only sort by either \"key\" or \"value\"");
  }
  ValueList pairs;
  ValueList keys;
  for (const auto& [key, item] : value.dict().entries) {
    TRY(folded, ignore_case(position == 0 ? key : item, truthy(bound[0])));
    keys.push_back(folded);
    pairs.push_back(Value::list({key, item}, SeqKind::kTuple));
  }
  TRY(sorted, sort_by_keys(std::move(pairs), keys, truthy(bound[2])));
  return Value::list(std::move(sorted));
}

namespace {

Result<Value> min_or_max(RenderState& state, const Value& value, CallArgs& args, bool want_max) {
  BIND(bound, want_max ? "max" : "min", {"case_sensitive", Value(false)}, {"attribute", Value::none()});
  TRY(items, iterate(value));
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    TRY(looked_up, lookup_path(state, items[i], bound[1], nullptr));
    TRY(key, ignore_case(looked_up, truthy(bound[0])));
    if (i == 0) {
      best_key = key;
      continue;
    }
    // Python's min/max keep the first of equal items.
    TRY(c, compare(key, best_key, want_max ? ">" : "<"));
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}

}  // namespace

Result<Value> filter_min(RenderState& state, const Value& value, CallArgs& args) {
  return min_or_max(state, value, args, false);
}
Result<Value> filter_max(RenderState& state, const Value& value, CallArgs& args) {
  return min_or_max(state, value, args, true);
}

Result<Value> filter_sum(RenderState& state, const Value& value, CallArgs& args) {
  BIND(bound, "sum", {"attribute", Value::none()}, {"start", Value(0)});
  TRY(items, iterate(value));
  if (bound[1].is_string()) return fail("sum() can't sum strings [use ''.join(seq) instead]");
  Value total = bound[1];
  for (const Value& item : items) {
    TRY(looked_up, lookup_path(state, item, bound[0], nullptr));
    TRY(next, binary_op(state, Op::kAdd, total, looked_up));
    total = next;
  }
  return total;
}

Result<Value> filter_reverse(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "reverse");
  if (value.is_string()) {
    std::u32string cps = unicode::to_code_points(value.text());
    std::reverse(cps.begin(), cps.end());
    return value.is_markup() ? Value::markup(unicode::to_utf8(cps)) : Value(unicode::to_utf8(cps));
  }
  if (value.is_undefined() || value.is_list() || value.is_dict()) {
    // A generator cannot be reversed in place; jinja2 falls back to list(value) reversed.
    const bool materialise = value.is_seq(SeqKind::kGenerator);
    TRY(items, iterate(value));
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items), materialise ? SeqKind::kList : SeqKind::kGenerator);
  }
  return fail("argument must be iterable");
}

Result<Value> filter_batch(RenderState&, const Value& value, CallArgs& args) {
  BIND(bound, "batch", {"linecount", Value(), true}, {"fill_with", Value::none()});
  if (!bound[0].is_int() || bound[0].as_int() <= 0) return fail("batch: linecount must be a positive int");
  const auto size = static_cast<size_t>(bound[0].as_int());
  TRY(items, iterate(value));
  ValueList batches;
  ValueList current;
  for (const Value& item : items) {
    if (current.size() == size) batches.push_back(Value::list(std::exchange(current, {})));
    current.push_back(item);
  }
  if (!current.empty()) {
    if (!bound[1].is_none()) {
      while (current.size() < size) current.push_back(bound[1]);
    }
    batches.push_back(Value::list(std::move(current)));
  }
  return generator(std::move(batches));
}

}  // namespace tern::chat
