#include "engine/kv/disk_tier.h"

#include <chrono>
#include <cstring>

namespace tern::engine {

DiskTier::DiskTier(backend::KvCache& cache, std::shared_ptr<DiskKvStore> store)
    : cache_(cache), store_(std::move(store)), buffer_(static_cast<size_t>(payload_bytes(cache.shape()))) {}

void DiskTier::copy_out(int32_t block, std::span<uint8_t> out) {
  backend::KvCache& cache = cache_;
  const auto& shape = cache.shape();
  const size_t key_bytes = static_cast<size_t>(shape.block_size * shape.key_width * 2);
  const size_t value_bytes = static_cast<size_t>(shape.block_size * shape.value_width * 2);
  uint8_t* p = out.data();
  for (int64_t layer = 0; layer < shape.num_layers; ++layer) {
    std::memcpy(p, cache.keys(layer, block), key_bytes);
    p += key_bytes;
    std::memcpy(p, cache.values(layer, block), value_bytes);
    p += value_bytes;
  }
}

void DiskTier::copy_in(int32_t block, std::span<const uint8_t> in) {
  const auto& shape = cache_.shape();
  const size_t key_bytes = static_cast<size_t>(shape.block_size * shape.key_width * 2);
  const size_t value_bytes = static_cast<size_t>(shape.block_size * shape.value_width * 2);
  const uint8_t* p = in.data();
  for (int64_t layer = 0; layer < shape.num_layers; ++layer) {
    std::memcpy(cache_.keys(layer, block), p, key_bytes);
    p += key_bytes;
    std::memcpy(cache_.values(layer, block), p, value_bytes);
    p += value_bytes;
  }
}

void DiskTier::store(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) {
  if (store_->contains(hash)) return;
  std::vector<uint8_t> payload(buffer_.size());
  copy_out(block, payload);
  store_->put(hash, parent, tokens, std::move(payload));
}

bool DiskTier::load(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) {
  if (!store_->contains(hash)) {
    ++misses_;
    return false;
  }
  // Slower than recomputing (as last measured): decline, but measure again now and then.
  if (read_s_ > 0 && recompute_s_ > 0 && read_s_ > recompute_s_ && ++since_measured_ % 32 != 0) {
    ++declined_;
    return false;
  }
  const auto start = std::chrono::steady_clock::now();
  if (!store_->get(hash, parent, tokens, buffer_)) return false;
  copy_in(block, buffer_);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  read_s_ = read_s_ == 0 ? seconds : 0.8 * read_s_ + 0.2 * seconds;
  return true;
}

DiskTierStats DiskTier::stats() const {
  DiskTierStats stats{.store = store_->stats(), .declined_slower = declined_, .read_seconds_per_block = read_s_,
                      .block_bytes = static_cast<int64_t>(buffer_.size())};
  stats.store.misses += misses_;  // lookups the tier answered itself (the store's get() never saw them)
  return stats;
}

}  // namespace tern::engine
