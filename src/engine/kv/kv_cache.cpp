#include "engine/kv/kv_cache.h"

namespace tern::engine {

KvCache::KvCache(const model::ModelConfig& config, int64_t num_blocks, int64_t block_size)
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
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t KvCache::bytes_per_block(const model::ModelConfig& config, int64_t block_size) {
  return config.num_layers * block_size * (config.kv_width() + config.v_width()) * 2;
}

std::optional<int32_t> KvCache::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t block = free_.back();
  free_.pop_back();
  return block;
}

void KvCache::release(int32_t block) { free_.push_back(block); }

}  // namespace tern::engine
