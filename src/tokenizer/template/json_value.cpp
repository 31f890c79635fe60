#include "tokenizer/template/json_value.h"

#include <algorithm>
#include <limits>

#include "tokenizer/template/python_text.h"
#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

template <class Json>
Result<Value> convert(const Json& json, int depth_left) {
  if (depth_left <= 0) return fail("context JSON is nested too deeply");
  switch (json.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value(json.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto v = json.template get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return fail("context JSON integer {} does not fit in 64 bits", v);
      }
      return Value(static_cast<int64_t>(v));
    }
    case nlohmann::json::value_t::number_float: return Value(json.template get<double>());
    case nlohmann::json::value_t::string: {
      const auto& text = json.template get_ref<const std::string&>();
      if (!unicode::is_valid_utf8(text)) return fail("context JSON holds a string that is not valid UTF-8");
      return Value(text);
    }
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(json.size());
      for (const auto& element : json) {
        auto item = convert(element, depth_left - 1);
        if (!item) return item;
        items.push_back(std::move(*item));
      }
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      DictData dict;
      dict.entries.reserve(json.size());
      for (auto it = json.begin(); it != json.end(); ++it) {
        if (!unicode::is_valid_utf8(it.key())) return fail("context JSON holds a key that is not valid UTF-8");
        auto item = convert(it.value(), depth_left - 1);
        if (!item) return item;
        // JSON objects from nlohmann have unique keys, so appending keeps Python's dict semantics.
        dict.entries.emplace_back(Value(it.key()), std::move(*item));
      }
      return Value::dict(std::move(dict));
    }
    case nlohmann::json::value_t::binary: return fail("context JSON holds binary data");
    case nlohmann::json::value_t::discarded: return fail("context JSON is discarded");
  }
  return fail("unknown JSON type");
}

/// Python's json module turns dict keys into strings: True -> "true", None -> "null", 1.5 -> "1.5".
Result<std::string> key_text(const Value& key) {
  switch (key.kind()) {
    case ValueKind::kString: return key.text();
    case ValueKind::kBool: return std::string(key.as_bool() ? "true" : "false");
    case ValueKind::kNone: return std::string("null");
    case ValueKind::kInt: return std::to_string(key.as_int());
    case ValueKind::kFloat: return json_float(key.as_double());
    default: return fail("keys must be str, int, float, bool or None, not {}", type_name(key));
  }
}

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& options) : options_(options) {
    item_separator_ = options.item_separator.value_or(options.indent ? "," : ", ");
    key_separator_ = options.key_separator.value_or(": ");
  }

  Result<void> dump(const Value& value, int level) {
    if (level > 512) return fail("tojson: value nested too deeply");
    switch (value.kind()) {
      case ValueKind::kNone: out_ += "null"; return {};
      case ValueKind::kBool: out_ += value.as_bool() ? "true" : "false"; return {};
      case ValueKind::kInt: out_ += std::to_string(value.as_int()); return {};
      case ValueKind::kFloat: out_ += json_float(value.as_double()); return {};
      case ValueKind::kString: append_json_string(out_, value.text(), options_.ensure_ascii); return {};
      case ValueKind::kList:
        if (value.list().kind == SeqKind::kGenerator) break;
        return dump_list(value.items(), level);
      case ValueKind::kDict: return dump_dict(value.dict(), level);
      default: break;
    }
    return fail("Object of type {} is not JSON serializable", type_name(value));
  }

  std::string take() { return std::move(out_); }

 private:
  void newline(int level) {
    out_.push_back('\n');
    for (int i = 0; i < level; ++i) out_ += *options_.indent;
  }

  Result<void> dump_list(const ValueList& items, int level) {
    if (items.empty()) {
      out_ += "[]";
      return {};
    }
    out_.push_back('[');
    if (options_.indent) newline(level + 1);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) {
        out_ += item_separator_;
        if (options_.indent) newline(level + 1);
      }
      auto r = dump(items[i], level + 1);
      if (!r) return r;
    }
    if (options_.indent) newline(level);
    out_.push_back(']');
    return {};
  }

  Result<void> dump_dict(const DictData& dict, int level) {
    if (dict.entries.empty()) {
      out_ += "{}";
      return {};
    }
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& entry : dict.entries) entries.push_back(&entry);
    if (options_.sort_keys) {
      Result<void> status;
      std::stable_sort(entries.begin(), entries.end(), [&](const auto* a, const auto* b) {
        auto c = compare(a->first, b->first);
        if (!c) {
          if (status) status = std::unexpected(c.error());
          return false;
        }
        return *c < 0;
      });
      if (!status) return status;
    }
    out_.push_back('{');
    if (options_.indent) newline(level + 1);
    bool first = true;
    for (const auto* entry : entries) {
      if (!first) {
        out_ += item_separator_;
        if (options_.indent) newline(level + 1);
      }
      first = false;
      auto key = key_text(entry->first);
      if (!key) return std::unexpected(key.error());
      append_json_string(out_, *key, options_.ensure_ascii);
      out_ += key_separator_;
      auto r = dump(entry->second, level + 1);
      if (!r) return r;
    }
    if (options_.indent) newline(level);
    out_.push_back('}');
    return {};
  }

  const JsonDumpOptions& options_;
  std::string item_separator_;
  std::string key_separator_;
  std::string out_;
};

}  // namespace

Result<Value> value_from_json(const nlohmann::ordered_json& json, int max_depth) { return convert(json, max_depth); }
Result<Value> value_from_json(const nlohmann::json& json, int max_depth) { return convert(json, max_depth); }

Result<std::string> json_dumps(const Value& value, const JsonDumpOptions& options) {
  Dumper dumper(options);
  auto r = dumper.dump(value, 0);
  if (!r) return std::unexpected(r.error());
  return dumper.take();
}

}  // namespace tern::chat
