#pragma once
// Quantities typed on a command line: a number followed by an optional unit. Errors name the text.

#include <cstdint>
#include <string>

#include "util/result.h"

namespace tern {

/// "2G", "512M", "64MiB", "1000000" -> bytes (K, M, G are powers of 1024); positive, below 8 EiB.
Result<int64_t> parse_bytes(const std::string& text);

/// "100ms", "0.25s", "2" (seconds), "5m", "1h" -> seconds; "off" or "0" -> 0; at most 7 days.
Result<double> parse_seconds(const std::string& text);

}  // namespace tern
