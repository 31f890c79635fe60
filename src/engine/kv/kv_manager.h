#pragma once
// Which request holds which KV blocks, and automatic prefix caching. The scheduler sees only this
// narrow interface; KvCache (the memory) never learns about requests.
//
// Prefix caching: once a block is full, it is keyed by a chained hash
//     hash(block i) = H(hash(block i-1), its block_size token ids, extra key)
// where the extra key folds in what else must match for the K/V to be reusable (model, adapter,
// cache salt). A later request whose prompt starts with the same tokens takes those blocks instead of
// computing them. A hit is verified against the block's stored tokens and parent hash, so a hash
// collision can cost a recompute but never a wrong answer.
//
// Free blocks: a block whose reference count drops to zero goes on the free list. Blocks without a
// hash go to the front (reused first); hashed blocks go to the back in LRU order and keep their
// cache entry until allocation reaches them, so a prefix stays reusable until space is needed.

#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tern::engine {

/// A request's blocks, as the KV manager tracks them. Owned by the request; opaque to the scheduler.
struct RequestBlocks {
  std::vector<int32_t> table;    ///< block ids in position order
  std::vector<uint64_t> hashes;  ///< chained hashes of the first hashes.size() (full, cached) blocks
};

struct PrefixCacheStats {
  int64_t queries = 0;  ///< prompt tokens looked up
  int64_t hits = 0;     ///< prompt tokens found cached
};

class KvManager {
 public:
  KvManager(int64_t num_blocks, int64_t block_size, bool prefix_caching = true);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t num_free_blocks() const { return num_free_; }
  /// Fraction of blocks held by requests (cached-but-free blocks count as free).
  double usage() const { return num_blocks_ == 0 ? 0.0 : 1.0 - static_cast<double>(num_free_) / num_blocks_; }
  const PrefixCacheStats& prefix_stats() const { return stats_; }
  /// Undoes the statistics of a lookup whose request was not admitted (it will look up again).
  void restore_prefix_stats(const PrefixCacheStats& stats) { stats_ = stats; }
  int64_t blocks_for(int64_t num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  /// For a request with no blocks yet: takes the longest cached prefix of `tokens` (whole blocks,
  /// leaving at least one token to compute, since the last prompt token must produce logits) and
  /// returns how many tokens it covers. Counts toward the prefix-cache statistics.
  int64_t acquire_cached_prefix(RequestBlocks& request, std::span<const int32_t> tokens, uint64_t extra_key);

  /// Grows the request's table to cover `num_tokens` positions. False (and nothing allocated) when
  /// the free blocks do not suffice: the scheduler must preempt or wait.
  bool allocate_slots(RequestBlocks& request, int64_t num_tokens);

  /// After a forward pass computed positions [0, num_computed): keys every newly full block so later
  /// requests can reuse it.
  void cache_full_blocks(RequestBlocks& request, std::span<const int32_t> tokens, int64_t num_computed,
                         uint64_t extra_key);

  /// Releases all the request's blocks (the last block first, so a prefix's head outlives its tail).
  void free(RequestBlocks& request);

  /// A 64-bit key for strings that must match for K/V reuse (model name, cache salt, adapter).
  static uint64_t extra_key(std::span<const std::string_view> parts);

 private:
  static constexpr int32_t kNone = -1;
  struct Block {
    int32_t ref_count = 0;
    bool hashed = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    int32_t prev = kNone;  // free-list links
    int32_t next = kNone;
    bool on_free_list = false;
  };

  uint64_t block_hash(uint64_t parent, std::span<const int32_t> tokens, uint64_t extra_key) const;
  bool matches(int32_t block, uint64_t parent, std::span<const int32_t> tokens) const;
  void push_free(int32_t block, bool front);
  void unlink_free(int32_t block);
  int32_t pop_free();

  int64_t num_blocks_;
  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> block_tokens_;  // num_blocks x block_size: the tokens a hashed block holds
  std::unordered_map<uint64_t, int32_t> cached_;
  int32_t free_head_ = kNone;
  int32_t free_tail_ = kNone;
  int64_t num_free_ = 0;
  PrefixCacheStats stats_;
};

}  // namespace tern::engine
