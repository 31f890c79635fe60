#include "model/kv_cache.h"

namespace tern::model {

KvCache::KvCache(const ModelConfig& config, int64_t num_blocks, int64_t block_size)
    : block_size_(block_size),
      num_blocks_(num_blocks),
      key_width_(config.kv_width()),
      value_width_(config.v_width()) {
  keys_.resize(static_cast<size_t>(config.num_layers));
  values_.resize(static_cast<size_t>(config.num_layers));
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    keys_[layer] = std::make_unique_for_overwrite<uint16_t[]>(static_cast<size_t>(num_blocks * block_size * key_width_));
    values_[layer] = std::make_unique_for_overwrite<uint16_t[]>(static_cast<size_t>(num_blocks * block_size * value_width_));
  }
}

int64_t KvCache::bytes_per_block(const ModelConfig& config, int64_t block_size) {
  return config.num_layers * block_size * (config.kv_width() + config.v_width()) * 2;
}

}  // namespace tern::model
