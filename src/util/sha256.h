#pragma once
// SHA-256 of files and buffers (OpenSSL), used to verify downloaded models and goldens.

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "util/result.h"

namespace tern {

/// Lower-case hex SHA-256 of a buffer.
std::string sha256_hex(std::span<const uint8_t> bytes);

/// Lower-case hex SHA-256 of a file, read in chunks; `on_progress(bytes_done, bytes_total)` is called
/// as it goes (may be empty).
Result<std::string> sha256_file_hex(const std::string& path,
                                    const std::function<void(uint64_t, uint64_t)>& on_progress = {});

}  // namespace tern
