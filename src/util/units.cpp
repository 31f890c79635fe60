#include "util/units.h"

#include <optional>

namespace tern {
namespace {

struct NumberAndUnit {
  double value = 0;
  std::string unit;  ///< what follows the number, possibly empty
};

/// The leading number of `text` (as std::stod reads it) and the rest; nothing if there is no number.
std::optional<NumberAndUnit> split_number(const std::string& text) {
  size_t used = 0;
  NumberAndUnit out;
  try {
    out.value = std::stod(text, &used);
  } catch (...) {
    return std::nullopt;
  }
  out.unit = text.substr(used);
  return out;
}

}  // namespace

Result<int64_t> parse_bytes(const std::string& text) {
  auto parsed = split_number(text);
  if (!parsed) return fail("'{}' is not a size (examples: 2G, 512M, 1000000)", text);
  std::string& unit = parsed->unit;
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'i') unit.pop_back();
  double scale = 1;
  if (unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) return fail("'{}' has an unknown unit (use K, M or G)", text);
  if (!(parsed->value > 0) || parsed->value * scale > 9e18) return fail("'{}' must be positive and below 8 EiB", text);
  return static_cast<int64_t>(parsed->value * scale);
}

Result<double> parse_seconds(const std::string& text, double max_days) {
  if (text == "off") return 0.0;
  auto parsed = split_number(text);
  if (!parsed) return fail("'{}' is not a duration (examples: 100ms, 0.5s, off)", text);
  double scale = 1;
  if (parsed->unit == "ms") scale = 1e-3;
  else if (parsed->unit == "m") scale = 60;
  else if (parsed->unit == "h") scale = 3600;
  else if (parsed->unit == "d") scale = 86400;
  else if (parsed->unit != "s" && !parsed->unit.empty()) return fail("'{}' has an unknown unit (use ms, s, m, h or d)", text);
  if (!(parsed->value >= 0) || parsed->value * scale > max_days * 86400) return fail("'{}' must be between 0 and {} days", text, max_days);
  return parsed->value * scale;
}

}  // namespace tern
