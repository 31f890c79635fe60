#pragma once
// Prometheus text exposition (format 0.0.4) pieces shared by every /metrics source: a family's HELP
// and TYPE lines, and label values escaped as the format requires.

#include <string>

#include <fmt/format.h>

namespace tern {

/// A label value with backslash, double quote and newline escaped.
inline std::string prometheus_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

/// "# HELP tern:<name> <help>" and "# TYPE tern:<name> <type>".
inline void prometheus_header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP tern:{} {}\n# TYPE tern:{} {}\n", name, help, name, type);
}

}  // namespace tern
