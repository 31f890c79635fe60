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
// Free blocks: a block whose reference count drops to zero goes on a free list and keeps its cache
// entry until allocation reaches it, so a prefix stays reusable until space is needed. Eviction is
// segmented LRU: a cached block that a later request has reused (a shared system prompt, a returning
// conversation) goes to the protected list; blocks without a hash (used first) and cached blocks no
// one has reused yet (most often a request's own tail) go to the probation list, which is evicted
// first. Without the split, a stream of one-off request tails pushes out a shared prompt that is reused
// less often than the cache turns over. The protected list holds at most 3/4 of the pool; past that its
// least recently used block moves back to probation (and must be reused again to return), so a new
// hot prefix still finds room. Within each list, least recently freed goes first.
//
// Retention (pins): a request may ask that its prompt's first N tokens stay cached for a TTL after
// their last use (Anthropic cache_control, OpenAI prompt_cache_retention). A pinned block whose
// reference count drops to zero is kept off the free list until its pin expires; every hit refreshes
// the pin (now + its TTL). Pins are bounded twice: a pool-wide limit (set_pin_limit) and a quota per
// owner (the org); past either, blocks are cached as usual and the request is told (PinOutcome).
// Pins never starve running requests: a running request that needs a block takes an idle pinned one
// (the soonest to expire) before anyone is preempted, and a waiting request may too when nothing
// runs. Time is passed in, so tests drive expiry with their own clock.

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tern::engine {

using KvClock = std::chrono::steady_clock;

/// A request's blocks, as the KV manager tracks them. Owned by the request; opaque to the scheduler.
struct RequestBlocks {
  std::vector<int32_t> table;    ///< block ids in position order
  std::vector<uint64_t> hashes;  ///< chained hashes of the first hashes.size() (full, cached) blocks
  int64_t num_hit_blocks = 0;    ///< of table, taken from the prefix cache (not computed by this request)
  int64_t num_lower_tier_hit_blocks = 0;  ///< of those, read back from the lower tier (disk)
  int64_t num_pinned_hit_blocks = 0;      ///< of those, pinned (kept by a retention request)
  int64_t num_pin_checked = 0;   ///< of table, blocks its PinRequest has been applied to
};

/// Retention up to a breakpoint: the prompt's first `num_tokens` tokens stay cached `ttl` after last use.
struct PinBreakpoint {
  int64_t num_tokens = 0;
  std::chrono::seconds ttl{0};
};

/// What a request asks to keep, and whose quota it counts against.
struct PinRequest {
  std::vector<PinBreakpoint> breakpoints;
  uint64_t owner = 0;               ///< KvManager::extra_key of the org (or key) that pays for the pins
  int64_t owner_quota_blocks = -1;  ///< the owner's limit on pinned blocks; < 0: only the pool-wide limit

  bool empty() const { return breakpoints.empty(); }
  /// Blocks at the start of the prompt that some breakpoint covers whole.
  int64_t num_blocks(int64_t block_size) const;
  /// TTL of block i: the longest among the breakpoints at or after its end (0: none covers it).
  std::chrono::seconds ttl_of_block(int64_t i, int64_t block_size) const;
};

/// What retention did for one request (its usage reports it). Survives preemption.
struct PinOutcome {
  std::map<int64_t, int64_t> written_tokens_by_ttl_s;  ///< tokens this request computed and pinned, by TTL (s)
  int64_t denied_tokens = 0;  ///< tokens it asked to pin that the quota or pool limit left merely cached
  int64_t written_tokens() const {
    int64_t n = 0;
    for (const auto& [ttl, tokens] : written_tokens_by_ttl_s) n += tokens;
    return n;
  }
};

/// A slower tier below RAM (the disk store): every block the prefix cache keys is offered to it, and a
/// prefix lookup that misses in RAM continues there. Implemented by the engine (it owns the K/V memory).
class KvLowerTier {
 public:
  virtual ~KvLowerTier() = default;
  /// `block` was just computed and keyed: keep a copy (taken now; written later).
  virtual void store(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) = 0;
  /// Fills `block` with the K/V stored under `hash` if they are there, intact, and hold `tokens` after
  /// `parent` — and reading them is faster than computing them; false otherwise.
  virtual bool load(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) = 0;
};

/// Sees the prefix cache change (KV-cache events for routers, observe/kv_events.h): a block keyed and
/// cached, a cached block evicted. Called on the engine thread; must not block.
class KvCacheObserver {
 public:
  virtual ~KvCacheObserver() = default;
  /// `hash` (after `parent`, 0 for a prompt's first block) now holds `tokens`.
  virtual void on_stored(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) = 0;
  virtual void on_removed(uint64_t hash) = 0;
};

struct PinStats {
  int64_t pinned_blocks = 0;   ///< now, in use or idle
  int64_t idle_pinned_blocks = 0;  ///< now, held only by their pin
  int64_t pinned = 0;          ///< blocks newly pinned, total
  int64_t refreshed = 0;       ///< hits on a pinned block (each renews its TTL)
  int64_t expired = 0;         ///< pins that ran out
  int64_t yielded = 0;         ///< idle pinned blocks given to a request before their TTL ran out
  int64_t denied_quota = 0;    ///< blocks not pinned: the owner's quota was full
  int64_t denied_pool = 0;     ///< blocks not pinned: the pool-wide limit was reached
};

struct PrefixCacheStats {
  int64_t queries = 0;  ///< prompt tokens looked up
  int64_t hits = 0;     ///< prompt tokens found cached (RAM and lower tier)
  int64_t lower_tier_hits = 0;  ///< of those, read back from the lower tier (disk)
  int64_t evictions = 0;        ///< cached blocks dropped from RAM to make room
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
  /// Undoes the statistics of a lookup whose request was not admitted (it will look up again; blocks
  /// it read from the lower tier stay in RAM, so those reads stay counted).
  void restore_prefix_stats(const PrefixCacheStats& stats) {
    stats_.queries = stats.queries;
    stats_.hits = stats.hits;  // lower_tier_hits and evictions happened all the same
  }
  int64_t blocks_for(int64_t num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  /// How many tokens of `tokens` acquire_cached_prefix() would find in RAM now, without taking them:
  /// no references, statistics, pin renewals or lower-tier reads.
  int64_t cached_prefix_tokens(std::span<const int32_t> tokens, uint64_t extra_key) const;

  /// For a request with no blocks yet: takes the longest cached prefix of `tokens` (whole blocks,
  /// leaving at least one token to compute, since the last prompt token must produce logits) and
  /// returns how many tokens it covers. Counts toward the prefix-cache statistics; a pinned block
  /// found renews its pin from `now`.
  int64_t acquire_cached_prefix(RequestBlocks& request, std::span<const int32_t> tokens, uint64_t extra_key,
                                KvClock::time_point now = KvClock::now());

  /// Grows the request's table to cover `num_tokens` positions. False (and nothing allocated) when
  /// the free blocks do not suffice: the scheduler must preempt or wait. With `may_take_pins`, idle
  /// pinned blocks are given up (soonest to expire first) before that answer.
  bool allocate_slots(RequestBlocks& request, int64_t num_tokens, bool may_take_pins = false);

  /// Pins the request's cached blocks that `pins` covers and has not been applied to yet (call after
  /// cache_full_blocks); records written and denied tokens in `outcome`.
  void apply_pins(RequestBlocks& request, const PinRequest& pins, PinOutcome& outcome, KvClock::time_point now);

  /// Ends the pins whose TTL ran out by `now`; their idle blocks become ordinary cached blocks,
  /// evicted first.
  void expire_pins(KvClock::time_point now);

  /// The tier below RAM (may be null). Not owned.
  void set_lower_tier(KvLowerTier* tier) { lower_tier_ = tier; }
  /// Told of every block cached and evicted (may be null). Not owned.
  void set_observer(KvCacheObserver* observer) { observer_ = observer; }

  /// Most blocks pinned at once, all owners together (default: half the pool).
  void set_pin_limit(int64_t blocks) { max_pinned_blocks_ = blocks; }
  int64_t pin_limit() const { return max_pinned_blocks_; }
  PinStats pin_stats() const;
  /// Blocks pinned now for `owner`.
  int64_t pinned_blocks_of(uint64_t owner) const;

  /// After a forward pass computed positions [0, num_computed): keys every newly full block so later
  /// requests can reuse it.
  void cache_full_blocks(RequestBlocks& request, std::span<const int32_t> tokens, int64_t num_computed,
                         uint64_t extra_key);

  /// Releases all the request's blocks (the last block first, so a prefix's head outlives its tail).
  /// A block whose pin holds past `now` stays cached off the free list.
  void free(RequestBlocks& request, KvClock::time_point now = KvClock::now());

  /// A 64-bit key for strings that must match for K/V reuse (model name, cache salt, adapter).
  static uint64_t extra_key(std::span<const std::string_view> parts);

 private:
  static constexpr int32_t kNone = -1;
  struct Block {
    int32_t ref_count = 0;
    bool hashed = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    bool reused = false;   // cached, and taken by a later request since it was computed (or since it was demoted)
    int32_t prev = kNone;  // free-list links
    int32_t next = kNone;
    bool on_free_list = false;
    uint8_t free_list = 0;  // which: kProbation or kProtected
    bool pinned = false;
    KvClock::time_point pin_until{};
    std::chrono::seconds pin_ttl{0};
    uint64_t pin_owner = 0;
  };

  uint64_t block_hash(uint64_t parent, std::span<const int32_t> tokens, uint64_t extra_key) const;
  bool matches(int32_t block, uint64_t parent, std::span<const int32_t> tokens) const;
  /// The RAM block cached under `hash` with this parent and these tokens, or -1 (absent, or a hash
  /// collision with other tokens).
  int32_t cached_block(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const;
  /// The prompt's blocks that a prefix hit may cover (the full blocks before its last token), in
  /// order: fn(hash, parent hash, block's tokens) for each until it returns false; how many it accepted.
  template <class Fn>
  int64_t walk_prompt_blocks(std::span<const int32_t> tokens, uint64_t extra_key, Fn&& fn) const;
  /// Onto the probation list's front (`front`: used or evicted first), else onto the back of the list
  /// its reuse earns.
  void push_free(int32_t block, bool front);
  void link_free(int32_t block, uint8_t list, bool front);
  void unlink_free(int32_t block);
  /// The free block to use next: probation's oldest, else protected's oldest (evicting its cache entry).
  int32_t pop_free();
  /// Makes an unpinned, hashed block pinned for `owner` until now + ttl.
  void pin(int32_t block, uint64_t owner, std::chrono::seconds ttl, KvClock::time_point now);
  /// Moves a pinned block's expiry (keeping the idle set ordered).
  void extend_pin(int32_t block, KvClock::time_point until, std::chrono::seconds ttl);
  /// Ends a block's pin; an idle block goes to the front of the free list (evicted first).
  void unpin(int32_t block);

  int64_t num_blocks_;
  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> block_tokens_;  // num_blocks x block_size: the tokens a hashed block holds
  std::unordered_map<uint64_t, int32_t> cached_;
  static constexpr uint8_t kProbation = 0, kProtected = 1;
  struct FreeList {
    int32_t head = kNone;
    int32_t tail = kNone;
    int64_t size = 0;
  };
  FreeList free_lists_[2];
  int64_t max_protected_free_;  // 3/4 of the pool
  int64_t num_free_ = 0;
  PrefixCacheStats stats_;
  // Pins.
  int64_t max_pinned_blocks_;
  std::set<std::pair<KvClock::time_point, int32_t>> idle_pins_;  // pinned blocks nobody holds, by expiry
  std::unordered_map<uint64_t, int64_t> pinned_by_owner_;
  PinStats pin_stats_;
  KvLowerTier* lower_tier_ = nullptr;
  KvCacheObserver* observer_ = nullptr;
};

}  // namespace tern::engine
