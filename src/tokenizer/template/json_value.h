#pragma once
// Crossing between JSON and template values: the render context comes in as JSON, and the `tojson`
// filter goes back out the way Python's `json.dumps` writes it (HF overrides jinja2's own tojson with
// `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tokenizer/template/value.h"
#include "util/result.h"

namespace tern::chat {

/// Converts a JSON document, keeping object key order (Python dicts are insertion-ordered). Fails on
/// nesting deeper than `max_depth`, on integers outside int64, and on strings that are not UTF-8.
Result<Value> value_from_json(const nlohmann::ordered_json& json, int max_depth = 512);
/// Same for nlohmann::json, whose objects iterate in sorted key order; see ChatTemplate::render.
Result<Value> value_from_json(const nlohmann::json& json, int max_depth = 512);

/// The arguments of Python's `json.dumps` that HF's tojson exposes.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  ///< per-level indent; set means "pretty" output
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
};

/// Python `json.dumps(value, ...)`. Tuples and dict views serialise as arrays; undefined, generators
/// and functions fail as in Python ("Object of type Undefined is not JSON serializable").
Result<std::string> json_dumps(const Value& value, const JsonDumpOptions& options);

}  // namespace tern::chat
