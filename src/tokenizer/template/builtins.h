#pragma once
// What a template can reach besides its own code: jinja2's filters (`x|trim`), tests (`x is defined`),
// the attribute and item access rules of HF's ImmutableSandboxedEnvironment (`message.role`,
// `message['content']`, `text.strip()`), and the global functions HF installs.
//
// Filters, tests and methods return bare error messages; the evaluator prefixes the template line.

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "tokenizer/template/render_options.h"
#include "tokenizer/template/value.h"
#include "util/result.h"

namespace tern::chat {

/// Per-render budget shared by the evaluator and the builtins (see RenderLimits).
class RenderState {
 public:
  explicit RenderState(const RenderOptions& options) : options_(options) {}

  const RenderOptions& options() const { return options_; }

  /// Accounts for a string or list of `bytes` being built; fails past the per-value or total limit.
  Result<void> charge_bytes(size_t bytes);
  /// Accounts for one loop iteration or macro call.
  Result<void> charge_iteration();

 private:
  const RenderOptions& options_;
  size_t built_bytes_ = 0;
  size_t iterations_ = 0;
};

using FilterFn = Result<Value> (*)(RenderState& state, const Value& subject, CallArgs& args);
using TestFn = Result<bool> (*)(RenderState& state, const Value& subject, CallArgs& args);

struct FilterSpec {
  std::string_view name;
  FilterFn fn;
};

struct TestSpec {
  std::string_view name;
  TestFn fn;
};

/// The filter called `name`, or nullptr.
const FilterSpec* find_filter(std::string_view name);
/// True for jinja2 built-in filters this interpreter does not implement (parse fails naming them).
bool is_unsupported_filter(std::string_view name);
/// The test called `name`, or nullptr.
const TestSpec* find_test(std::string_view name);

/// jinja2's sandboxed `obj.name`: a Python attribute (method) first, then the item; a missing one is
/// undefined. Fails when `object` is undefined, or for methods the sandbox forbids (`list.append`).
Result<Value> get_attribute(RenderState& state, const Value& object, std::string_view name);
/// jinja2's sandboxed `obj[key]`: the item first, then for string keys the attribute.
Result<Value> get_item(RenderState& state, const Value& object, const Value& key);
/// `obj[start:stop:step]` with Python slice semantics; omitted parts are passed as None.
Result<Value> get_slice(RenderState& state, const Value& object, const Value& start, const Value& stop,
                        const Value& step);

/// One parameter of a builtin, for binding positional and keyword arguments Python-style.
struct Param {
  std::string_view name;
  Value default_value;  ///< undefined (the default-constructed Value) marks a required parameter
  bool required = false;
};

/// Binds `args` to `params` in order; fails on unknown keywords, duplicates, missing required values
/// or too many positional arguments. The result has one value per parameter.
Result<ValueList> bind_args(std::string_view function, CallArgs& args, std::span<const Param> params);

/// bind_args with the parameters written inline: bind("join", args, {{"d", Value("")}, ...}).
inline Result<ValueList> bind(std::string_view function, CallArgs& args, std::initializer_list<Param> params) {
  return bind_args(function, args, std::span<const Param>(params.begin(), params.size()));
}

/// Binds a builtin's `args` to the listed parameters as the ValueList `var`, returning on error.
#define BIND(var, name, ...)                                     \
  auto var##_bound = bind(name, args, {__VA_ARGS__});            \
  if (!var##_bound) return std::unexpected(var##_bound.error()); \
  [[maybe_unused]] ValueList& var = *var##_bound

/// markupsafe's escape(): & < > " ' become entities.
std::string html_escape(std::string_view text);

}  // namespace tern::chat
