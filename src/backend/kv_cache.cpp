#include "backend/kv_cache.h"

namespace tern::backend {

KvCache::KvCache(const KvCacheShape& shape, int64_t num_blocks)
    : shape_(shape), num_blocks_(num_blocks), memory_(static_cast<size_t>(num_blocks * shape.bytes_per_block())) {
  const int64_t key_elements = num_blocks * shape.block_size * shape.key_width;
  const int64_t value_elements = num_blocks * shape.block_size * shape.value_width;
  auto* next = static_cast<uint16_t*>(memory_.data());
  for (int64_t layer = 0; layer < shape.num_layers; ++layer) {
    keys_.push_back(next);
    next += key_elements;
    values_.push_back(next);
    next += value_elements;
  }
}

}  // namespace tern::backend
