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

KvManager::KvManager(int64_t num_blocks, int64_t block_size, bool prefix_caching)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      prefix_caching_(prefix_caching),
      blocks_(static_cast<size_t>(num_blocks)),
      block_tokens_(static_cast<size_t>(num_blocks * block_size)) {
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
  b.on_free_list = true;
  if (free_head_ == kNone) {
    b.prev = b.next = kNone;
    free_head_ = free_tail_ = block;
  } else if (front) {
    b.prev = kNone;
    b.next = free_head_;
    blocks_[free_head_].prev = block;
    free_head_ = block;
  } else {
    b.next = kNone;
    b.prev = free_tail_;
    blocks_[free_tail_].next = block;
    free_tail_ = block;
  }
  ++num_free_;
}

void KvManager::unlink_free(int32_t block) {
  Block& b = blocks_[block];
  if (b.prev != kNone) blocks_[b.prev].next = b.next; else free_head_ = b.next;
  if (b.next != kNone) blocks_[b.next].prev = b.prev; else free_tail_ = b.prev;
  b.prev = b.next = kNone;
  b.on_free_list = false;
  --num_free_;
}

int32_t KvManager::pop_free() {
  const int32_t block = free_head_;
  unlink_free(block);
  Block& b = blocks_[block];
  if (b.hashed) {  // evict: the least recently used cached block
    auto it = cached_.find(b.hash);
    if (it != cached_.end() && it->second == block) cached_.erase(it);
    b.hashed = false;
  }
  return block;
}

int64_t KvManager::acquire_cached_prefix(RequestBlocks& request, std::span<const int32_t> tokens, uint64_t extra_key) {
  stats_.queries += static_cast<int64_t>(tokens.size());
  if (!prefix_caching_ || tokens.empty()) return 0;
  const int64_t max_blocks = (static_cast<int64_t>(tokens.size()) - 1) / block_size_;
  uint64_t parent = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i * block_size_), static_cast<size_t>(block_size_));
    const uint64_t h = block_hash(parent, block_tokens, extra_key);
    auto it = cached_.find(h);
    if (it == cached_.end() || !matches(it->second, parent, block_tokens)) break;
    const int32_t block = it->second;
    if (blocks_[block].on_free_list) unlink_free(block);
    ++blocks_[block].ref_count;
    request.table.push_back(block);
    request.hashes.push_back(h);
    parent = h;
  }
  const int64_t hit_tokens = static_cast<int64_t>(request.table.size()) * block_size_;
  stats_.hits += hit_tokens;
  return hit_tokens;
}

bool KvManager::allocate_slots(RequestBlocks& request, int64_t num_tokens) {
  const int64_t needed = blocks_for(num_tokens) - static_cast<int64_t>(request.table.size());
  if (needed <= 0) return true;
  if (needed > num_free_) return false;
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
  }
}

void KvManager::free(RequestBlocks& request) {
  for (auto it = request.table.rbegin(); it != request.table.rend(); ++it) {
    Block& b = blocks_[*it];
    if (--b.ref_count == 0) push_free(*it, /*front=*/!b.hashed);
  }
  request.table.clear();
  request.hashes.clear();
}

}  // namespace tern::engine
