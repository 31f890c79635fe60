#include "tokenizer/template/builtins.h"

#include <algorithm>

namespace tern::chat {

Result<void> RenderState::charge_bytes(size_t bytes) {
  if (bytes > options_.limits.max_output_bytes) {
    return fail("a value of {} bytes exceeds the {}-byte limit", bytes, options_.limits.max_output_bytes);
  }
  built_bytes_ += bytes;
  if (built_bytes_ > options_.limits.max_built_bytes) {
    return fail("the template built more than {} bytes of strings (limit)", options_.limits.max_built_bytes);
  }
  return {};
}

Result<void> RenderState::charge_iteration() {
  if (++iterations_ > options_.limits.max_iterations) {
    return fail("the template ran more than {} loop iterations and macro calls (limit)",
                options_.limits.max_iterations);
  }
  return {};
}

Result<ValueList> bind_args(std::string_view function, CallArgs& args, std::span<const Param> params) {
  if (args.positional.size() > params.size()) {
    return fail("{}() takes at most {} arguments ({} given)", function, params.size(), args.positional.size());
  }
  ValueList bound(params.size());
  std::vector<bool> given(params.size(), false);
  for (size_t i = 0; i < args.positional.size(); ++i) {
    bound[i] = std::move(args.positional[i]);
    given[i] = true;
  }
  for (auto& [key, value] : args.keywords) {
    auto it = std::find_if(params.begin(), params.end(), [&](const Param& p) { return p.name == key; });
    if (it == params.end()) return fail("{}() got an unexpected keyword argument '{}'", function, key);
    const size_t index = static_cast<size_t>(it - params.begin());
    if (given[index]) return fail("{}() got multiple values for argument '{}'", function, key);
    bound[index] = std::move(value);
    given[index] = true;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (given[i]) continue;
    if (params[i].required) return fail("{}() missing required argument '{}'", function, params[i].name);
    bound[i] = params[i].default_value;
  }
  return bound;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace tern::chat
