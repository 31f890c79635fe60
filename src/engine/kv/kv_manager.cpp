#include "engine/kv/kv_manager.h"

#include <algorithm>
#include <string_view>

namespace tern::engine {
namespace {

// splitmix64's finaliser: cheap, and every input bit affects every output bit.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

int64_t PinRequest::num_blocks(int64_t block_size) const {
  int64_t tokens = 0;
  for (const PinBreakpoint& b : breakpoints) tokens = std::max(tokens, b.num_tokens);
  return tokens / block_size;
}

std::chrono::seconds PinRequest::ttl_of_block(int64_t i, int64_t block_size) const {
  std::chrono::seconds ttl{0};
  for (const PinBreakpoint& b : breakpoints) {
    if (b.num_tokens >= (i + 1) * block_size) ttl = std::max(ttl, b.ttl);
  }
  return ttl;
}

KvManager::KvManager(int64_t num_blocks, int64_t block_size, bool prefix_caching)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      prefix_caching_(prefix_caching),
      blocks_(static_cast<size_t>(num_blocks)),
      block_tokens_(static_cast<size_t>(num_blocks * block_size)),
      max_protected_free_(num_blocks * 3 / 4),
      max_pinned_blocks_(num_blocks / 2) {
  for (int32_t b = 0; b < num_blocks; ++b) push_free(b, /*front=*/false);
}

uint64_t KvManager::extra_key(std::span<const std::string_view> parts) {
  uint64_t h = 0x5ee0;
  for (std::string_view part : parts) {
    for (unsigned char c : part) h = mix(h ^ c);
    h = mix(h ^ 0xff00);  // separator: ("ab","c") != ("a","bc")
  }
  return h;
}

uint64_t KvManager::block_hash(uint64_t parent, std::span<const int32_t> tokens, uint64_t extra_key) const {
  uint64_t h = mix(parent ^ extra_key);
  for (int32_t t : tokens) h = mix(h ^ static_cast<uint32_t>(t));
  return h;
}

bool KvManager::matches(int32_t block, uint64_t parent, std::span<const int32_t> tokens) const {
  const Block& b = blocks_[block];
  if (!b.hashed || b.parent_hash != parent) return false;
  return std::equal(tokens.begin(), tokens.end(), block_tokens_.begin() + block * block_size_);
}

void KvManager::push_free(int32_t block, bool front) {
  Block& b = blocks_[block];
  if (front || !b.hashed || !b.reused) {
    link_free(block, kProbation, front);
    return;
  }
  link_free(block, kProtected, /*front=*/false);
  if (free_lists_[kProtected].size > max_protected_free_) {  // the oldest protected block gets a second chance
    const int32_t oldest = free_lists_[kProtected].head;
    unlink_free(oldest);
    blocks_[oldest].reused = false;
    link_free(oldest, kProbation, /*front=*/false);
  }
}

void KvManager::link_free(int32_t block, uint8_t list, bool front) {
  Block& b = blocks_[block];
  FreeList& l = free_lists_[list];
  b.on_free_list = true;
  b.free_list = list;
  if (l.head == kNone) {
    b.prev = b.next = kNone;
    l.head = l.tail = block;
  } else if (front) {
    b.prev = kNone;
    b.next = l.head;
    blocks_[l.head].prev = block;
    l.head = block;
  } else {
    b.next = kNone;
    b.prev = l.tail;
    blocks_[l.tail].next = block;
    l.tail = block;
  }
  ++l.size;
  ++num_free_;
}

void KvManager::unlink_free(int32_t block) {
  Block& b = blocks_[block];
  FreeList& l = free_lists_[b.free_list];
  if (b.prev != kNone) blocks_[b.prev].next = b.next; else l.head = b.next;
  if (b.next != kNone) blocks_[b.next].prev = b.prev; else l.tail = b.prev;
  b.prev = b.next = kNone;
  b.on_free_list = false;
  --l.size;
  --num_free_;
}

int32_t KvManager::pop_free() {
  const int32_t block = free_lists_[kProbation].size > 0 ? free_lists_[kProbation].head : free_lists_[kProtected].head;
  unlink_free(block);
  Block& b = blocks_[block];
  if (b.hashed) {  // evict: the least recently used cached block of its list
    auto it = cached_.find(b.hash);
    if (it != cached_.end() && it->second == block) cached_.erase(it);
    b.hashed = false;
    ++stats_.evictions;
    if (observer_ != nullptr) observer_->on_removed(b.hash);
  }
  b.reused = false;
  return block;
}

void KvManager::pin(int32_t block, uint64_t owner, std::chrono::seconds ttl, KvClock::time_point now) {
  Block& b = blocks_[block];
  b.pinned = true;
  b.pin_until = now + ttl;
  b.pin_ttl = ttl;
  b.pin_owner = owner;
  ++pinned_by_owner_[owner];
  ++pin_stats_.pinned_blocks;
  ++pin_stats_.pinned;
  if (b.ref_count == 0) {  // a cached block no request holds (a duplicate's original): off the free list
    if (b.on_free_list) unlink_free(block);
    idle_pins_.emplace(b.pin_until, block);
  }
}

void KvManager::extend_pin(int32_t block, KvClock::time_point until, std::chrono::seconds ttl) {
  Block& b = blocks_[block];
  b.pin_ttl = std::max(b.pin_ttl, ttl);
  if (until <= b.pin_until) return;
  if (b.ref_count == 0) {
    idle_pins_.erase({b.pin_until, block});
    idle_pins_.emplace(until, block);
  }
  b.pin_until = until;
}

void KvManager::unpin(int32_t block) {
  Block& b = blocks_[block];
  if (!b.pinned) return;
  if (auto it = pinned_by_owner_.find(b.pin_owner); it != pinned_by_owner_.end() && --it->second == 0) pinned_by_owner_.erase(it);
  --pin_stats_.pinned_blocks;
  b.pinned = false;
  if (b.ref_count == 0) {
    idle_pins_.erase({b.pin_until, block});
    push_free(block, /*front=*/true);
  }
  b.pin_until = {};
  b.pin_ttl = std::chrono::seconds{0};
}

void KvManager::expire_pins(KvClock::time_point now) {
  while (!idle_pins_.empty() && idle_pins_.begin()->first <= now) {
    ++pin_stats_.expired;
    unpin(idle_pins_.begin()->second);
  }
}

PinStats KvManager::pin_stats() const {
  PinStats s = pin_stats_;
  s.idle_pinned_blocks = static_cast<int64_t>(idle_pins_.size());
  return s;
}

int64_t KvManager::pinned_blocks_of(uint64_t owner) const {
  auto it = pinned_by_owner_.find(owner);
  return it == pinned_by_owner_.end() ? 0 : it->second;
}

void KvManager::apply_pins(RequestBlocks& request, const PinRequest& pins, PinOutcome& outcome, KvClock::time_point now) {
  if (!prefix_caching_ || pins.empty()) return;
  const int64_t end = std::min<int64_t>(pins.num_blocks(block_size_), static_cast<int64_t>(request.hashes.size()));
  for (int64_t i = request.num_pin_checked; i < end; ++i) {
    const std::chrono::seconds ttl = pins.ttl_of_block(i, block_size_);
    // The block that holds this prefix in the cache: the request's own, or the one another request
    // cached first (cache_full_blocks kept that one).
    int32_t block = request.table[static_cast<size_t>(i)];
    const uint64_t h = request.hashes[static_cast<size_t>(i)];
    if (!blocks_[block].hashed || blocks_[block].hash != h) {
      auto it = cached_.find(h);
      if (it == cached_.end()) continue;
      block = it->second;
    }
    Block& b = blocks_[block];
    const bool computed_here = i >= request.num_hit_blocks;
    if (b.pinned) {
      extend_pin(block, now + ttl, ttl);
      if (computed_here) outcome.written_tokens_by_ttl_s[ttl.count()] += block_size_;
    } else if (pins.owner_quota_blocks >= 0 && pinned_blocks_of(pins.owner) >= pins.owner_quota_blocks) {
      ++pin_stats_.denied_quota;
      outcome.denied_tokens += block_size_;
    } else if (pin_stats_.pinned_blocks >= max_pinned_blocks_) {
      ++pin_stats_.denied_pool;
      outcome.denied_tokens += block_size_;
    } else {
      pin(block, pins.owner, ttl, now);
      if (computed_here) outcome.written_tokens_by_ttl_s[ttl.count()] += block_size_;
    }
  }
  request.num_pin_checked = std::max(request.num_pin_checked, end);
}

template <class Fn>
int64_t KvManager::walk_prompt_blocks(std::span<const int32_t> tokens, uint64_t extra_key, Fn&& fn) const {
  const int64_t max_blocks = tokens.empty() ? 0 : (static_cast<int64_t>(tokens.size()) - 1) / block_size_;
  uint64_t parent = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i * block_size_), static_cast<size_t>(block_size_));
    const uint64_t h = block_hash(parent, block_tokens, extra_key);
    if (!fn(h, parent, block_tokens)) return i;
    parent = h;
  }
  return max_blocks;
}

int32_t KvManager::cached_block(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const {
  const auto it = cached_.find(hash);
  return it != cached_.end() && matches(it->second, parent, tokens) ? it->second : -1;
}

int64_t KvManager::cached_prefix_tokens(std::span<const int32_t> tokens, uint64_t extra_key) const {
  if (!prefix_caching_) return 0;
  return block_size_ * walk_prompt_blocks(tokens, extra_key, [&](uint64_t h, uint64_t parent, std::span<const int32_t> block_tokens) {
           return cached_block(h, parent, block_tokens) >= 0;
         });
}

int64_t KvManager::acquire_cached_prefix(RequestBlocks& request, std::span<const int32_t> tokens, uint64_t extra_key,
                                         KvClock::time_point now) {
  stats_.queries += static_cast<int64_t>(tokens.size());
  if (!prefix_caching_) return 0;
  walk_prompt_blocks(tokens, extra_key, [&](uint64_t h, uint64_t parent, std::span<const int32_t> block_tokens) {
    const int32_t found = cached_block(h, parent, block_tokens);
    if (found < 0) {
      // Not in RAM: the lower tier may have it (into a free block; pins are never taken for this). A
      // colliding block under the same hash stays, and the walk stops there.
      if (cached_.contains(h) || lower_tier_ == nullptr || num_free_ == 0) return false;
      const int32_t block = pop_free();
      if (!lower_tier_->load(block, h, parent, block_tokens)) {
        push_free(block, /*front=*/true);
        return false;
      }
      Block& b = blocks_[block];
      b.ref_count = 1;
      b.hashed = true;
      b.reused = true;  // asked for again: a hit from the lower tier
      b.hash = h;
      b.parent_hash = parent;
      std::copy(block_tokens.begin(), block_tokens.end(), block_tokens_.begin() + block * block_size_);
      cached_.emplace(h, block);
      request.table.push_back(block);
      request.hashes.push_back(h);
      stats_.lower_tier_hits += block_size_;
      if (observer_ != nullptr) observer_->on_stored(h, parent, block_tokens);  // back in RAM
      ++request.num_lower_tier_hit_blocks;
      return true;
    }
    const int32_t block = found;
    Block& b = blocks_[block];
    if (b.on_free_list) unlink_free(block);
    b.reused = true;
    if (b.pinned) {  // a hit renews the pin
      extend_pin(block, now + b.pin_ttl, b.pin_ttl);
      if (b.ref_count == 0) idle_pins_.erase({b.pin_until, block});
      ++pin_stats_.refreshed;
      ++request.num_pinned_hit_blocks;
    }
    ++b.ref_count;
    request.table.push_back(block);
    request.hashes.push_back(h);
    return true;
  });
  request.num_hit_blocks = static_cast<int64_t>(request.table.size());
  const int64_t hit_tokens = static_cast<int64_t>(request.table.size()) * block_size_;
  stats_.hits += hit_tokens;
  return hit_tokens;
}

bool KvManager::allocate_slots(RequestBlocks& request, int64_t num_tokens, bool may_take_pins) {
  const int64_t needed = blocks_for(num_tokens) - static_cast<int64_t>(request.table.size());
  if (needed <= 0) return true;
  if (needed > num_free_) {
    if (!may_take_pins || needed > num_free_ + static_cast<int64_t>(idle_pins_.size())) return false;
    while (num_free_ < needed) {  // the soonest to expire first
      ++pin_stats_.yielded;
      unpin(idle_pins_.begin()->second);
    }
  }
  for (int64_t i = 0; i < needed; ++i) {
    const int32_t block = pop_free();
    blocks_[block].ref_count = 1;
    request.table.push_back(block);
  }
  return true;
}

void KvManager::cache_full_blocks(RequestBlocks& request, std::span<const int32_t> tokens, int64_t num_computed,
                                  uint64_t extra_key) {
  if (!prefix_caching_) return;
  const int64_t full = std::min<int64_t>(num_computed / block_size_, static_cast<int64_t>(request.table.size()));
  while (static_cast<int64_t>(request.hashes.size()) < full) {
    const int64_t i = static_cast<int64_t>(request.hashes.size());
    const uint64_t parent = i == 0 ? 0 : request.hashes.back();
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i * block_size_), static_cast<size_t>(block_size_));
    const uint64_t h = block_hash(parent, block_tokens, extra_key);
    request.hashes.push_back(h);
    const int32_t block = request.table[static_cast<size_t>(i)];
    Block& b = blocks_[block];
    if (b.hashed) continue;  // already shared from the cache
    // Another request may have cached the same prefix in its own block first; keep that one.
    if (cached_.contains(h)) continue;
    b.hashed = true;
    b.hash = h;
    b.parent_hash = parent;
    std::copy(block_tokens.begin(), block_tokens.end(), block_tokens_.begin() + block * block_size_);
    cached_.emplace(h, block);
    if (lower_tier_ != nullptr) lower_tier_->store(block, h, parent, block_tokens);
    if (observer_ != nullptr) observer_->on_stored(h, parent, block_tokens);
  }
}

void KvManager::free(RequestBlocks& request, KvClock::time_point now) {
  for (auto it = request.table.rbegin(); it != request.table.rend(); ++it) {
    Block& b = blocks_[*it];
    if (--b.ref_count > 0) continue;
    if (b.pinned && b.pin_until > now) {
      idle_pins_.emplace(b.pin_until, *it);
    } else {
      if (b.pinned) {
        ++pin_stats_.expired;
        unpin(*it);  // pushes it to the front of the free list
      } else {
        push_free(*it, /*front=*/!b.hashed);
      }
    }
  }
  request.table.clear();
  request.hashes.clear();
  request.num_hit_blocks = 0;
  request.num_lower_tier_hit_blocks = 0;
  request.num_pinned_hit_blocks = 0;
  request.num_pin_checked = 0;
}

}  // namespace tern::engine
