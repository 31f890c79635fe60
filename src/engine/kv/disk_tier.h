#pragma once
// The disk store as the KV manager's lower tier: copies a block's K/V (every layer) out of the KV cache
// into the store's write queue when the prefix cache keys it, and back into a free block on a hit.
//
// Read or recompute: a hit is read back only while reading is measured to be faster than computing
// the block again. The tier keeps a moving average of its read time per block (with verification);
// the engine tells it, every step, what the step-time model predicts a block's worth of prompt tokens
// costs. When reading is slower it declines (counted), re-measuring one read in 32 so a warmer disk
// cache is noticed.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/kv_cache.h"
#include "engine/kv/disk_store.h"
#include "engine/kv/kv_manager.h"

namespace tern::engine {

struct DiskTierStats {
  DiskStoreStats store;
  int64_t declined_slower = 0;       ///< hits not read because recomputing was predicted faster
  double read_seconds_per_block = 0;  ///< moving average of a verified read
  int64_t block_bytes = 0;            ///< K/V bytes of one block
};

class DiskTier final : public KvLowerTier {
 public:
  DiskTier(backend::KvCache& cache, std::shared_ptr<DiskKvStore> store);

  void store(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) override;
  bool load(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) override;

  /// What computing one block of prompt tokens is predicted to cost now (seconds).
  void set_recompute_seconds_per_block(double seconds) { recompute_s_ = seconds; }
  DiskTierStats stats() const;
  DiskKvStore& disk() { return *store_; }

  /// Bytes of one block's K/V over all layers: what the store holds per block.
  static int64_t payload_bytes(const backend::KvCacheShape& shape) { return shape.bytes_per_block(); }

 private:
  void copy_out(int32_t block, std::span<uint8_t> out);
  void copy_in(int32_t block, std::span<const uint8_t> in);

  backend::KvCache& cache_;
  std::shared_ptr<DiskKvStore> store_;
  std::vector<uint8_t> buffer_;
  double recompute_s_ = 0;
  double read_s_ = 0;  // moving average; 0 until the first read
  int64_t declined_ = 0;
  int64_t misses_ = 0;  // lookups of a hash not on disk
  int64_t since_measured_ = 0;
};

}  // namespace tern::engine
