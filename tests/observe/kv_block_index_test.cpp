// The gateway's KV block index (observe/kv_block_index.h): events applied as llm-d's indexer applies
// them (stored, removed, cleared; integer or byte hashes), the longest cached prefix of a prompt's
// block chain, sequence gaps, hostile messages refused without effect (and a mutation run over a valid
// message), and a real round trip from tern's publisher over ZeroMQ.
#include "observe/kv_block_index.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <msgpack.hpp>
#include <random>
#include <thread>

#include "observe/kv_events.h"

namespace tern::observe {
namespace {

struct Stored {
  std::vector<uint64_t> hashes;
  int64_t block_size = 16;
  bool as_bytes = false;
};

/// [timestamp, [events]] with BlockStored / BlockRemoved / AllBlocksCleared as vLLM sends them.
std::string batch(const std::vector<Stored>& stored, const std::vector<uint64_t>& removed = {}, bool clear_first = false) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pack(&buffer);
  pack.pack_array(2);
  pack.pack_double(1.0);
  pack.pack_array(static_cast<uint32_t>(stored.size() + (removed.empty() ? 0 : 1) + (clear_first ? 1 : 0)));
  if (clear_first) {
    pack.pack_array(1);
    pack.pack(std::string_view("AllBlocksCleared"));
  }
  for (const Stored& s : stored) {
    pack.pack_array(7);  // vLLM's newer `medium` field at the end: ignored
    pack.pack(std::string_view("BlockStored"));
    pack.pack_array(static_cast<uint32_t>(s.hashes.size()));
    for (uint64_t h : s.hashes) {
      if (s.as_bytes) {
        char bytes[32] = {};
        for (int i = 0; i < 8; ++i) bytes[24 + i] = static_cast<char>(h >> (56 - 8 * i));
        pack.pack_bin(32);
        pack.pack_bin_body(bytes, 32);
      } else {
        pack.pack_uint64(h);
      }
    }
    pack.pack_nil();
    pack.pack_array(0);
    pack.pack_int64(s.block_size);
    pack.pack_nil();
    pack.pack(std::string_view("GPU"));
  }
  if (!removed.empty()) {
    pack.pack_array(2);
    pack.pack(std::string_view("BlockRemoved"));
    pack.pack_array(static_cast<uint32_t>(removed.size()));
    for (uint64_t h : removed) pack.pack_uint64(h);
  }
  return std::string(buffer.data(), buffer.size());
}

std::string sequence(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(n >> (56 - 8 * i));
  return out;
}

std::vector<int32_t> tokens(int n, int32_t first = 100) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(first + i);
  return out;
}

TEST(KvBlockChain, ChainsFullBlocksFromTheRoot) {
  const auto t = tokens(40);
  const uint64_t root = kv_event_root_hash("");
  const auto chain = kv_event_block_chain(t, 16, root);
  ASSERT_EQ(chain.size(), 2u);  // the 8 tokens past the second block are no full block
  EXPECT_EQ(chain[0], kv_event_block_hash(root, std::span(t).subspan(0, 16)));
  EXPECT_EQ(chain[1], kv_event_block_hash(chain[0], std::span(t).subspan(16, 16)));
  EXPECT_NE(kv_event_block_chain(t, 16, kv_event_root_hash("seed"))[0], chain[0]);
  EXPECT_TRUE(kv_event_block_chain(t, 0, root).empty());
}

TEST(KvBlockIndex, MatchesTheLongestCachedPrefix) {
  KvBlockIndex index;
  const auto chain = kv_event_block_chain(tokens(64), 16, kv_event_root_hash(""));
  ASSERT_EQ(chain.size(), 4u);
  ASSERT_TRUE(index.apply("kv@a@m", sequence(0), batch({{.hashes = {chain[0], chain[1], chain[2]}}}, {}, true)));
  EXPECT_EQ(index.block_size("a@m"), 16);
  EXPECT_EQ(index.block_size("b@m"), 0);
  EXPECT_EQ(index.matched_blocks("a@m", chain), 3);
  EXPECT_EQ(index.matched_blocks("b@m", chain), 0);
  ASSERT_TRUE(index.apply("kv@a@m", sequence(1), batch({}, {chain[1]})));
  EXPECT_EQ(index.matched_blocks("a@m", chain), 1) << "a removed middle block ends the prefix";
  ASSERT_TRUE(index.apply("kv@b@m", sequence(0), batch({{.hashes = {chain[0], chain[1], chain[2], chain[3]}, .as_bytes = true}})));
  EXPECT_EQ(index.matched_blocks("b@m", chain), 4) << "byte hashes: their last 8 bytes, big-endian";
  ASSERT_TRUE(index.apply("kv@b@m", sequence(1), batch({}, {}, true)));
  EXPECT_EQ(index.matched_blocks("b@m", chain), 0);
  const KvBlockIndexStats stats = index.stats();
  EXPECT_EQ(stats.sources, 2);
  EXPECT_EQ(stats.stored, 7);
  EXPECT_EQ(stats.removed, 1);
  EXPECT_EQ(stats.cleared, 2);
  EXPECT_EQ(stats.blocks, 2);
  EXPECT_EQ(stats.sequence_gaps, 0);
  EXPECT_NE(kv_index_metrics_text(stats).find("tern:kv_index_blocks 2\n"), std::string::npos);
}

TEST(KvBlockIndex, CountsSequenceGapsButNotARestart) {
  KvBlockIndex index;
  ASSERT_TRUE(index.apply("kv@a@m", sequence(5), batch({{.hashes = {1}}})));
  ASSERT_TRUE(index.apply("kv@a@m", sequence(6), batch({{.hashes = {2}}})));
  ASSERT_TRUE(index.apply("kv@a@m", sequence(9), batch({{.hashes = {3}}})));
  EXPECT_EQ(index.stats().sequence_gaps, 1);
  ASSERT_TRUE(index.apply("kv@a@m", sequence(0), batch({}, {}, true)));  // the replica restarted
  EXPECT_EQ(index.stats().sequence_gaps, 1);
}

TEST(KvBlockIndex, RefusesHostileMessagesWithoutEffect) {
  KvBlockIndex index;
  const std::string good = batch({{.hashes = {42}}});
  EXPECT_FALSE(index.apply("nope@a@m", sequence(0), good));
  EXPECT_FALSE(index.apply("kv@", sequence(0), good));
  EXPECT_FALSE(index.apply("kv@a@m", "short", good));
  EXPECT_FALSE(index.apply("kv@a@m", sequence(0), "\xc1 not msgpack"));
  EXPECT_FALSE(index.apply("kv@a@m", sequence(0), std::string("\x91\x01", 2)));  // [1]: no event list
  const uint64_t chain[] = {42};
  EXPECT_EQ(index.matched_blocks("a@m", chain), 0);
  EXPECT_EQ(index.stats().bad_messages, 5);
  // An unknown event is skipped (and reported); the known ones beside it apply.
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pack(&buffer);
  pack.pack_array(2);
  pack.pack_double(1.0);
  pack.pack_array(2);
  pack.pack_array(1);
  pack.pack(std::string_view("SomethingNew"));
  pack.pack_array(5);
  pack.pack(std::string_view("BlockStored"));
  pack.pack_array(1);
  pack.pack_uint64(42);
  pack.pack_nil();
  pack.pack_array(0);
  pack.pack_int64(16);
  EXPECT_FALSE(index.apply("kv@a@m", sequence(1), std::string(buffer.data(), buffer.size())));
  EXPECT_EQ(index.matched_blocks("a@m", chain), 1);
}

TEST(KvBlockIndex, BoundsTheSourcesItKeeps) {
  KvBlockIndex index;
  for (size_t i = 0; i < KvBlockIndex::kMaxSources; ++i) {
    ASSERT_TRUE(index.apply(fmt::format("kv@pod{}@m", i), sequence(0), batch({{.hashes = {1}}})));
  }
  auto refused = index.apply("kv@one-too-many@m", sequence(0), batch({{.hashes = {1}}}));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("sources"), std::string::npos);
  EXPECT_EQ(index.stats().sources, static_cast<int64_t>(KvBlockIndex::kMaxSources));
  const uint64_t chain[] = {1};
  EXPECT_EQ(index.matched_blocks("pod0@m", chain), 1) << "the known ones still answer";
}

TEST(KvBlockIndex, SurvivesMutatedMessages) {
  // Byte flips, truncations and insertions over a valid batch: never a crash (ASan in CI), and the
  // index stays answerable.
  KvBlockIndex index;
  const std::string good = batch({{.hashes = {1, 2, 3}}, {.hashes = {4}, .as_bytes = true}}, {2}, true);
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string m = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const size_t at = rng() % m.size();
      switch (rng() % 3) {
        case 0: m[at] = static_cast<char>(rng()); break;
        case 1: m.resize(at); break;
        default: m.insert(at, 1, static_cast<char>(rng())); break;
      }
    }
    (void)index.apply("kv@fuzz@m", sequence(static_cast<uint64_t>(i)), m);
  }
  const uint64_t chain[] = {1};
  EXPECT_LE(index.matched_blocks("fuzz@m", chain), 1);
  EXPECT_GT(index.stats().bad_messages, 0);
}

TEST(KvBlockIndex, ReceivesThePublishersEventsOverZeroMq) {
  auto index = KvBlockIndex::listen("tcp://127.0.0.1:*");
  ASSERT_TRUE(index) << index.error().message;
  ASSERT_FALSE((*index)->endpoint().empty());
  auto publisher = KvEventPublisher::start({.endpoint = (*index)->endpoint(), .pod = "p", .model = "m", .block_size = 16, .hash_seed = ""});
  ASSERT_TRUE(publisher) << publisher.error().message;
  const auto t = tokens(48);
  // tern's own cache keys (any distinct values) chain as the KV manager reports them.
  (*publisher)->on_stored(1001, 0, std::span(t).subspan(0, 16));
  (*publisher)->on_stored(1002, 1001, std::span(t).subspan(16, 16));
  (*publisher)->on_stored(1003, 1002, std::span(t).subspan(32, 16));
  const auto chain = kv_event_block_chain(t, 16, kv_event_root_hash(""));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*index)->matched_blocks("p@m", chain) < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*index)->matched_blocks("p@m", chain), 3);
  EXPECT_EQ((*index)->block_size("p@m"), 16);
  (*publisher)->on_removed(1002);
  while ((*index)->matched_blocks("p@m", chain) != 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*index)->matched_blocks("p@m", chain), 1);
  EXPECT_EQ((*index)->stats().cleared, 1) << "the publisher's first message clears what the index held for it";
}

}  // namespace
}  // namespace tern::observe
