#include "engine/kv/kv_sizing.h"

#include <algorithm>
#include <fstream>

#include "backend/kv_cache.h"

namespace tern::engine {
namespace {

int64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return int64_t{4} << 30;
}

}  // namespace

Result<KvSizing> size_kv_cache(const model::ModelConfig& config, const KvSizingRequest& request) {
  KvSizing sizing;
  const int64_t model_context = config.context_length;
  sizing.max_model_len = request.context > 0 ? std::min(request.context, model_context)
                                             : std::min(model_context, request.default_context_cap);
  const backend::KvCacheShape shape{.num_layers = config.num_layers, .key_width = config.kv_width(),
                                    .value_width = config.v_width(), .block_size = request.block_size};
  sizing.block_bytes = shape.bytes_per_block();
  const int64_t min_blocks = (sizing.max_model_len + request.block_size - 1) / request.block_size;
  if (!request.memory_bytes) {
    sizing.num_blocks = min_blocks;
    return sizing;
  }
  sizing.num_blocks = *request.memory_bytes / sizing.block_bytes;
  if (sizing.num_blocks < min_blocks) {
    return fail("a KV cache of {} MiB holds {} tokens, less than one full context of {} (needs {} MiB)",
                *request.memory_bytes >> 20, sizing.num_blocks * request.block_size, sizing.max_model_len,
                (min_blocks * sizing.block_bytes + (1 << 20) - 1) >> 20);
  }
  return sizing;
}

int64_t default_kv_memory_bytes() { return std::min<int64_t>(available_memory_bytes() / 4, int64_t{4} << 30); }

Result<int64_t> parse_bytes(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return fail("'{}' is not a size (examples: 2G, 512M, 1000000)", text);
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'i') unit.pop_back();
  double scale = 1;
  if (unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) return fail("'{}' has an unknown unit (use K, M or G)", text);
  if (!(value > 0) || value * scale > 9e18) return fail("'{}' must be positive and below 8 EiB", text);
  return static_cast<int64_t>(value * scale);
}

}  // namespace tern::engine
