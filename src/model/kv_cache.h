#pragma once
// Paged KV cache storage: keys and values of every layer live in fixed-size blocks of `block_size`
// token positions; a sequence owns a block table (its blocks in position order), so position p of a
// sequence is at block table[p / block_size], offset p % block_size.
//
//   layer L keys:  | block 0: [block_size][n_kv_heads * head_dim] f16 | block 1 | ... |
//   layer L values likewise with value_dim.
//
// This class owns the memory only; which request gets which blocks (and prefix caching) is the KV
// manager's (engine/kv/kv_manager.h), which hands block ids to the forward pass through the batch.

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"

namespace tern::model {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t num_blocks, int64_t block_size = 16);

  /// Bytes one block takes over all layers.
  static int64_t bytes_per_block(const ModelConfig& config, int64_t block_size);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }

  uint16_t* keys(int64_t layer, int32_t block) { return keys_[layer].get() + block * block_size_ * key_width_; }
  uint16_t* values(int64_t layer, int32_t block) { return values_[layer].get() + block * block_size_ * value_width_; }
  int64_t key_width() const { return key_width_; }
  int64_t value_width() const { return value_width_; }

 private:
  int64_t block_size_;
  int64_t num_blocks_;
  int64_t key_width_;
  int64_t value_width_;
  // Not zero-filled: a position is always written before attention reads it, and untouched pages of a
  // large cache cost no resident memory until used.
  std::vector<std::unique_ptr<uint16_t[]>> keys_;
  std::vector<std::unique_ptr<uint16_t[]>> values_;
};

}  // namespace tern::model
