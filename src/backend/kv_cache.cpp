#include "backend/kv_cache.h"

namespace tern::backend {

KvCache::KvCache(const KvCacheShape& shape, int64_t num_blocks) : shape_(shape), num_blocks_(num_blocks) {
  keys_.resize(static_cast<size_t>(shape.num_layers));
  values_.resize(static_cast<size_t>(shape.num_layers));
  for (int64_t layer = 0; layer < shape.num_layers; ++layer) {
    keys_[layer] = std::make_unique_for_overwrite<uint16_t[]>(static_cast<size_t>(num_blocks * shape.block_size * shape.key_width));
    values_[layer] =
        std::make_unique_for_overwrite<uint16_t[]>(static_cast<size_t>(num_blocks * shape.block_size * shape.value_width));
  }
}

}  // namespace tern::backend
