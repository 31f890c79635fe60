#pragma once
// Reads a model's output as it streams and splits it into text and tool calls in the model's syntax
// (format.h). Text goes out as soon as it cannot be the start of a call; a call goes out as a first
// piece naming it (a fresh id and the tool's name), then its arguments' JSON text as it comes:
//
//   "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
//     text "Let me check."   call 0 {id, "get_weather"}   arguments "{\"city\": "   "\"Paris\"}"
//
//   kText ──trigger──► kHeader ──name, arguments key──► kArguments ──value closes──► kSuffix ──► kText
//
// Whitespace right before a call is dropped (it only separates). A call header that does not parse
// (possible only without a grammar) is given back as text. Used on the engine's thread, per request.

#include <string>
#include <string_view>
#include <vector>

#include "tool_calls/format.h"
#include "wire/types.h"

namespace tern::tool_calls {

class ToolCallParser {
 public:
  explicit ToolCallParser(Format format);

  struct Output {
    std::string text;
    std::vector<wire::ToolCallDelta> calls;
  };

  /// The text and call pieces that `text` (the next piece of output) completes.
  Output push(std::string_view text);
  /// At the end of the output: what was held back (a partial trigger is text after all).
  Output finish();
  int num_calls() const { return num_calls_; }

 private:
  enum class State { kText, kHeader, kArguments, kSuffix };

  void on_text(Output& out);
  bool on_header(Output& out);  // false: wait for more
  void on_arguments(Output& out);
  bool on_suffix();

  Format format_;
  State state_ = State::kText;
  std::string pending_;  // output not yet given out
  std::string space_before_call_;  // dropped before a trigger; given back if no call follows
  int num_calls_ = 0;
  // Scanning the arguments' JSON value: nesting depth, inside a string, after a backslash.
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  bool value_started_ = false;
};

/// A new tool-call id: "call_" and 24 random letters and digits.
std::string new_call_id();

}  // namespace tern::tool_calls
