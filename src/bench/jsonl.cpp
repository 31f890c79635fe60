#include "bench/jsonl.h"

#include <fstream>

namespace tern::bench {

Result<void> for_each_jsonl_object(const std::string& path, std::string_view what,
                                   const std::function<Result<void>(const nlohmann::json& row, size_t line_number)>& on_row) {
  std::ifstream in(path);
  if (!in) return fail("{}: cannot open", what);
  std::string line;
  size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
    if (row.is_discarded() || !row.is_object()) return fail("{} line {}: not a JSON object", what, line_number);
    if (auto ok = on_row(row, line_number); !ok) return ok;
  }
  return {};
}

}  // namespace tern::bench
