// The KV cache's disk tier: blocks round-trip bit for bit, survive reopening (a restart), are found
// only under their own store id, are verified (a flipped byte, a truncated file or another prefix
// under the same hash is never served, and the bad file is removed), stay under the size cap (least
// recently used out first), and — through DiskTier and the KV manager — a prefix evicted from RAM, or
// computed before a restart, comes back from disk with exactly the K/V it had.

#include "engine/kv/disk_store.h"
#include "engine/kv/disk_tier.h"
#include "engine/kv/kv_manager.h"

#include <gtest/gtest.h>

#include "token_sequences.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include <unistd.h>

namespace tern::engine {
namespace {

namespace fs = std::filesystem;
using test_tokens::seq;

constexpr int64_t kBlockSize = 4;

class DiskStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tern-disk-store-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<DiskKvStore> open(int64_t payload_bytes = 1000, int64_t capacity = 1 << 20, const std::string& id = "model-a") {
    auto store = DiskKvStore::open(dir_.string(), id, kBlockSize, payload_bytes, capacity);
    EXPECT_TRUE(store) << (store ? "" : store.error().message);
    return store ? std::move(*store) : nullptr;
  }
  static std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> out(n);
    for (auto& b : out) b = static_cast<uint8_t>(rng());
    return out;
  }

  fs::path dir_;
};

TEST_F(DiskStoreTest, ABlockRoundTripsBitForBitAndSurvivesReopening) {
  const auto tokens = seq(10, kBlockSize);
  const auto payload = random_bytes(1000, 1);
  {
    auto store = open();
    EXPECT_TRUE(store->put(0xabc, 0x1, tokens, payload));
    EXPECT_TRUE(store->contains(0xabc));
    std::vector<uint8_t> out(1000);
    EXPECT_TRUE(store->get(0xabc, 0x1, tokens, out)) << "readable while queued";
    EXPECT_EQ(out, payload);
    store->flush();
    EXPECT_EQ(store->stats().writes, 1);
    EXPECT_EQ(store->stats().blocks, 1);
  }
  auto reopened = open();
  EXPECT_EQ(reopened->stats().blocks, 1);
  std::vector<uint8_t> out(1000);
  ASSERT_TRUE(reopened->get(0xabc, 0x1, tokens, out));
  EXPECT_EQ(out, payload);
  EXPECT_FALSE(reopened->get(0xdef, 0x1, tokens, out));
  EXPECT_EQ(reopened->stats().misses, 1);
  // Another model's (or layout's) store id sees nothing of it.
  EXPECT_EQ(open(1000, 1 << 20, "model-b")->stats().blocks, 0);
}

TEST_F(DiskStoreTest, ADamagedFileIsNeverServedAndIsRemoved) {
  const auto tokens = seq(10, kBlockSize);
  const auto payload = random_bytes(1000, 2);
  fs::path file;
  {
    auto store = open();
    store->put(0x5, 0x0, tokens, payload);
    store->put(0x6, 0x5, seq(20, kBlockSize), payload);
    store->flush();
    file = store->path() / "0000000000000005.kv";
  }
  ASSERT_TRUE(fs::exists(file));
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-7, std::ios::end);
    f.put('\x5a');
  }
  auto store = open();
  std::vector<uint8_t> out(1000);
  EXPECT_FALSE(store->get(0x5, 0x0, tokens, out));
  EXPECT_EQ(store->stats().corrupt, 1);
  EXPECT_FALSE(fs::exists(file));
  EXPECT_FALSE(store->contains(0x5));
  // Another prefix under the same hash (a collision) is refused too.
  EXPECT_FALSE(store->get(0x6, 0x5, seq(21, kBlockSize), out));
  EXPECT_FALSE(store->get(0x6, 0x9, seq(20, kBlockSize), out));
}

TEST_F(DiskStoreTest, TruncatedAndStrayFilesAreRemovedAtOpen) {
  fs::path dir;
  {
    auto store = open();
    store->put(0x7, 0x0, seq(1, kBlockSize), random_bytes(1000, 3));
    store->flush();
    dir = store->path();
  }
  fs::resize_file(dir / "0000000000000007.kv", 500);
  std::ofstream(dir / "0000000000000008.kv.tmp") << "half a block";
  auto store = open();
  EXPECT_EQ(store->stats().blocks, 0);
  EXPECT_FALSE(fs::exists(dir / "0000000000000007.kv"));
  EXPECT_FALSE(fs::exists(dir / "0000000000000008.kv.tmp"));
}

TEST_F(DiskStoreTest, TheSizeCapEvictsTheLeastRecentlyUsed) {
  auto probe = open();
  const int64_t file_bytes = probe->file_bytes();
  probe.reset();
  auto store = open(1000, 3 * file_bytes);
  std::vector<uint8_t> out(1000);
  for (uint64_t h = 1; h <= 3; ++h) store->put(h, 0, seq(static_cast<int32_t>(h * 10), kBlockSize), random_bytes(1000, 4));
  store->flush();
  ASSERT_TRUE(store->get(1, 0, seq(10, kBlockSize), out));  // 1 is now the most recently used
  for (uint64_t h = 4; h <= 5; ++h) store->put(h, 0, seq(static_cast<int32_t>(h * 10), kBlockSize), random_bytes(1000, 4));
  store->flush();
  EXPECT_EQ(store->stats().blocks, 3);
  EXPECT_LE(store->stats().bytes, 3 * file_bytes);
  EXPECT_EQ(store->stats().evictions, 2);
  EXPECT_TRUE(store->contains(1));
  EXPECT_FALSE(store->contains(2));
  EXPECT_FALSE(store->contains(3));
  EXPECT_TRUE(store->contains(5));
}

TEST_F(DiskStoreTest, BadSettingsAreRefusedWithTheReason) {
  auto zero = DiskKvStore::open(dir_.string(), "m", kBlockSize, 1000, 0);
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("--kv-disk-bytes"), std::string::npos);
  auto tiny = DiskKvStore::open(dir_.string(), "m", kBlockSize, 1000, 100);
  ASSERT_FALSE(tiny);
  EXPECT_NE(tiny.error().message.find("smaller than one block"), std::string::npos);
  std::ofstream(dir_.string() + "-file") << "x";
  auto not_a_dir = DiskKvStore::open(dir_.string() + "-file", "m", kBlockSize, 1000, 1 << 20);
  EXPECT_FALSE(not_a_dir);
  fs::remove(dir_.string() + "-file");
}

// ---- through the KV manager ---------------------------------------------------------------------------

/// Writes a recognisable pattern into a block's K/V (what a forward pass would have computed).
void fill_block(backend::KvCache& cache, int32_t block, uint16_t seed) {
  for (int64_t layer = 0; layer < cache.shape().num_layers; ++layer) {
    uint16_t* k = cache.keys(layer, block);
    uint16_t* v = cache.values(layer, block);
    for (int64_t i = 0; i < cache.block_size() * cache.key_width(); ++i) k[i] = static_cast<uint16_t>(seed * 131 + layer * 7 + i);
    for (int64_t i = 0; i < cache.block_size() * cache.value_width(); ++i) v[i] = static_cast<uint16_t>(seed * 17 + layer * 3 + i * 5);
  }
}

bool block_equals(backend::KvCache& cache, int32_t block, uint16_t seed) {
  backend::KvCache expected(cache.shape(), 1);
  fill_block(expected, 0, seed);
  for (int64_t layer = 0; layer < cache.shape().num_layers; ++layer) {
    if (!std::equal(expected.keys(layer, 0), expected.keys(layer, 0) + cache.block_size() * cache.key_width(), cache.keys(layer, block))) return false;
    if (!std::equal(expected.values(layer, 0), expected.values(layer, 0) + cache.block_size() * cache.value_width(), cache.values(layer, block))) {
      return false;
    }
  }
  return true;
}

TEST_F(DiskStoreTest, APrefixEvictedFromRamOrComputedBeforeARestartComesBackFromDisk) {
  const backend::KvCacheShape shape{.num_layers = 3, .key_width = 8, .value_width = 6, .block_size = kBlockSize};
  const auto prompt = seq(1, 3 * kBlockSize + 1);  // 3 full blocks
  auto open_tier = [&](backend::KvCache& cache) {
    auto store = DiskKvStore::open(dir_.string(), "m", kBlockSize, DiskTier::payload_bytes(shape), 1 << 20);
    EXPECT_TRUE(store);
    return std::make_unique<DiskTier>(cache, std::move(*store));
  };
  {
    backend::KvCache cache(shape, 4);
    auto tier = open_tier(cache);
    KvManager kv(4, kBlockSize);
    kv.set_lower_tier(tier.get());
    RequestBlocks r;
    kv.acquire_cached_prefix(r, prompt, 0);
    ASSERT_TRUE(kv.allocate_slots(r, static_cast<int64_t>(prompt.size())));
    for (size_t i = 0; i < r.table.size(); ++i) fill_block(cache, r.table[i], static_cast<uint16_t>(i + 1));
    kv.cache_full_blocks(r, prompt, static_cast<int64_t>(prompt.size()), 0);
    kv.free(r);
    // Other traffic takes every block: the prefix is gone from RAM.
    RequestBlocks other;
    ASSERT_TRUE(kv.allocate_slots(other, 4 * kBlockSize));
    for (int32_t b : other.table) fill_block(cache, b, 99);
    kv.free(other);
    RequestBlocks again;
    EXPECT_EQ(kv.acquire_cached_prefix(again, prompt, 0), 3 * kBlockSize);
    EXPECT_EQ(kv.prefix_stats().lower_tier_hits, 3 * kBlockSize);
    for (size_t i = 0; i < again.table.size(); ++i) EXPECT_TRUE(block_equals(cache, again.table[i], static_cast<uint16_t>(i + 1))) << i;
    kv.free(again);
  }
  // A restart: a new cache, manager and store over the same directory.
  backend::KvCache cache(shape, 4);
  auto tier = open_tier(cache);
  KvManager kv(4, kBlockSize);
  kv.set_lower_tier(tier.get());
  RequestBlocks r;
  EXPECT_EQ(kv.acquire_cached_prefix(r, prompt, 0), 3 * kBlockSize);
  for (size_t i = 0; i < r.table.size(); ++i) EXPECT_TRUE(block_equals(cache, r.table[i], static_cast<uint16_t>(i + 1))) << i;
  // Another cache key (another model name, salt or adapter) does not find them.
  RequestBlocks salted;
  kv.free(r);
  EXPECT_EQ(kv.acquire_cached_prefix(salted, prompt, 77), 0);
}

// When reading is measured slower than recomputing, the tier declines (and re-measures now and then).
TEST_F(DiskStoreTest, TheTierDeclinesReadsSlowerThanRecomputing) {
  const backend::KvCacheShape shape{.num_layers = 2, .key_width = 4, .value_width = 4, .block_size = kBlockSize};
  backend::KvCache cache(shape, 2);
  auto store = DiskKvStore::open(dir_.string(), "m", kBlockSize, DiskTier::payload_bytes(shape), 1 << 20);
  ASSERT_TRUE(store);
  DiskTier tier(cache, std::move(*store));
  const auto tokens = seq(1, kBlockSize);
  tier.store(0, 42, 0, tokens);
  tier.disk().flush();
  ASSERT_TRUE(tier.load(1, 42, 0, tokens));  // measures one read
  tier.set_recompute_seconds_per_block(1e-12);
  int loaded = 0;
  for (int i = 0; i < 64; ++i) loaded += tier.load(1, 42, 0, tokens);
  EXPECT_EQ(tier.stats().declined_slower, 62);
  EXPECT_EQ(loaded, 2);
  tier.set_recompute_seconds_per_block(10);
  EXPECT_TRUE(tier.load(1, 42, 0, tokens));
}

}  // namespace
}  // namespace tern::engine
