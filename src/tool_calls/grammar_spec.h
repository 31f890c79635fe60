#pragma once
// The grammar of a reply that may (or must) call tools, in xgrammar's structural-tag JSON: each call
// is the format's fixed text around the tool's name, with its arguments held to the tool's parameter
// schema. The engine compiles it (engine::GrammarCompiler::structural_tag) and masks tokens with it,
// so every call the parser reads back names a real tool and carries arguments that validate.
//
//   tool_choice auto      free text; where the model writes the format's trigger, a whole call follows
//   tool_choice required  one or more calls, nothing else (one when parallel calls are off)
//   a named tool          exactly one call to it

#include <span>
#include <string>

#include "tool_calls/format.h"
#include "wire/types.h"

namespace tern::tool_calls {

/// `tools`: those the reply may call (with a named choice, the named one is picked from them).
std::string structural_tag(const Format& format, std::span<const wire::ToolDefinition> tools, const wire::ToolChoice& choice);

}  // namespace tern::tool_calls
