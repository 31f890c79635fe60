#pragma once
// Paged KV cache storage: keys and values of every layer live in fixed-size blocks of `block_size`
// token positions; a sequence owns a block table (its blocks in position order), so position p of a
// sequence is at block table[p / block_size], offset p % block_size.
//
//   layer L keys:  | block 0: [block_size][key_width] f16 | block 1 | ... |
//   layer L values likewise with value_width.
//
// This class owns the memory only (made through Backend::make_kv_cache); which request gets which
// blocks, and prefix caching, is the engine's KV manager's (engine/kv/kv_manager.h), which hands block
// ids to the forward pass through the batch.

#include <cstdint>
#include <memory>
#include <vector>

#include "util/huge_page_memory.h"

namespace tern::backend {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t key_width = 0;    ///< per position: num_kv_heads * head_dim
  int64_t value_width = 0;  ///< per position: num_kv_heads * value_dim
  int64_t block_size = 16;

  /// Bytes one block takes over all layers (F16 keys and values).
  int64_t bytes_per_block() const { return num_layers * block_size * (key_width + value_width) * 2; }
  bool operator==(const KvCacheShape&) const = default;
};

class KvCache {
 public:
  KvCache(const KvCacheShape& shape, int64_t num_blocks);

  const KvCacheShape& shape() const { return shape_; }
  int64_t block_size() const { return shape_.block_size; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t key_width() const { return shape_.key_width; }
  int64_t value_width() const { return shape_.value_width; }

  uint16_t* keys(int64_t layer, int32_t block) { return keys_[layer] + block * shape_.block_size * shape_.key_width; }
  uint16_t* values(int64_t layer, int32_t block) { return values_[layer] + block * shape_.block_size * shape_.value_width; }

 private:
  KvCacheShape shape_;
  int64_t num_blocks_;
  // One mapping for every layer's keys and values, on 2 MiB pages where the kernel gives them
  // (transparent huge pages): a sequence's blocks are scattered over the cache, and with 4 KiB pages
  // each block attention reads is likely a new TLB entry. Not zero-filled: a position is always written
  // before attention reads it, and untouched pages of a large cache cost no resident memory until used.
  HugePageMemory memory_;
  std::vector<uint16_t*> keys_;
  std::vector<uint16_t*> values_;
};

}  // namespace tern::backend
