#pragma once
// Quantities typed on a command line: a number followed by an optional unit. Errors name the text.

#include <cstdint>
#include <string>

#include "util/result.h"

namespace tern {

/// "2G", "512M", "64MiB", "1000000" -> bytes (K, M, G are powers of 1024); positive, below 8 EiB.
Result<int64_t> parse_bytes(const std::string& text);

/// "100ms", "0.25s", "2" (seconds), "5m", "1h", "30d" -> seconds; "off" or "0" -> 0; at most
/// `max_days` (7 by default: timeouts and intervals; key expiry allows years).
Result<double> parse_seconds(const std::string& text, double max_days = 7);

}  // namespace tern
