#pragma once
// Reading JSON Lines files (request logs, datasets): one JSON object per line, blank lines skipped.

#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace tern::bench {

/// Calls `on_row(row, line_number)` for each object of the file; stops at the first error, which
/// names `what` (e.g. "request log 'x.jsonl'") and the line.
Result<void> for_each_jsonl_object(const std::string& path, std::string_view what,
                                   const std::function<Result<void>(const nlohmann::json& row, size_t line_number)>& on_row);

}  // namespace tern::bench
