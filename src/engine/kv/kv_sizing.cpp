#include "engine/kv/kv_sizing.h"

#include <algorithm>
#include <fstream>

#include "model/model.h"

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

Result<KvSizing> size_kv_cache(const model::Model& model, const KvSizingRequest& request) {
  KvSizing sizing;
  const int64_t model_context = model.config().context_length;
  sizing.max_model_len = request.context > 0 ? std::min(request.context, model_context)
                                             : std::min(model_context, request.default_context_cap);
  sizing.block_bytes = model.kv_cache_shape(request.block_size).bytes_per_block();
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

}  // namespace tern::engine
