// Cache retention (pins) in the KV manager and the scheduler, driven by a test clock: a pinned prefix
// survives LRU churn, expires after its TTL, a hit renews it; per-owner quota and pool-wide limit;
// cache writes vs reads by TTL; running requests take idle pinned blocks before anyone is preempted,
// waiting ones do not while others run (until they have waited past max_prefill_wait_s); a random stress test with the accounting invariants and a
// shadow of the KV memory that checks every hit hands out the right K/V.

#include "engine/kv/kv_manager.h"
#include "engine/sched/scheduler.h"

#include <gtest/gtest.h>

#include "token_sequences.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace tern::engine {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using test_tokens::seq;

const KvClock::time_point t0 = KvClock::time_point{} + hours(1);

PinRequest pin_all(int64_t num_tokens, seconds ttl, uint64_t owner = 1, int64_t quota = -1) {
  return {.breakpoints = {{.num_tokens = num_tokens, .ttl = ttl}}, .owner = owner, .owner_quota_blocks = quota};
}

/// A request computing all of `tokens` at `now` with `pins`, then finishing (its blocks freed).
PinOutcome run_request(KvManager& kv, const std::vector<int32_t>& tokens, const PinRequest& pins, KvClock::time_point now,
                       uint64_t key = 0) {
  RequestBlocks r;
  PinOutcome outcome;
  kv.acquire_cached_prefix(r, tokens, key, now);
  EXPECT_TRUE(kv.allocate_slots(r, static_cast<int64_t>(tokens.size())));
  kv.cache_full_blocks(r, tokens, static_cast<int64_t>(tokens.size()), key);
  kv.apply_pins(r, pins, outcome, now);
  kv.free(r, now);
  return outcome;
}

/// Tokens of `tokens` a new request would find cached at `now` (acquires, then frees again).
int64_t probe(KvManager& kv, const std::vector<int32_t>& tokens, KvClock::time_point now) {
  RequestBlocks r;
  const int64_t hit = kv.acquire_cached_prefix(r, tokens, 0, now);
  kv.free(r, now);
  return hit;
}

/// Fills and frees every free block with fresh tokens (LRU churn), `rounds` times.
void churn(KvManager& kv, int rounds, KvClock::time_point now) {
  static int32_t next = 1'000'000;
  for (int i = 0; i < rounds; ++i) {
    const int64_t n = kv.num_free_blocks() * kv.block_size();
    if (n == 0) return;
    const auto tokens = seq(next, n);
    next += static_cast<int32_t>(n);
    run_request(kv, tokens, {}, now);
  }
}

// Without a pin, other traffic evicts a prefix; with one, it stays and hits.
TEST(KvRetention, APinnedPrefixSurvivesChurnThatEvictsAnUnpinnedOne) {
  const auto prompt = seq(1, 17);  // 4 full blocks
  KvManager lru(12, 4), pinned(12, 4);
  pinned.set_pin_limit(12);
  run_request(lru, prompt, {}, t0);
  run_request(pinned, prompt, pin_all(16, seconds(300)), t0);
  EXPECT_EQ(pinned.pin_stats().idle_pinned_blocks, 4);
  EXPECT_EQ(pinned.num_free_blocks(), 8) << "idle pinned blocks are not free";
  churn(lru, 3, t0 + seconds(60));
  churn(pinned, 3, t0 + seconds(60));
  EXPECT_EQ(probe(lru, prompt, t0 + seconds(120)), 0);
  EXPECT_EQ(probe(pinned, prompt, t0 + seconds(120)), 16);
}

// A pin ends after its TTL without a hit; the blocks are then ordinary cached blocks, evicted first.
TEST(KvRetention, ThePinExpiresAfterItsTtl) {
  KvManager kv(8, 4);
  const auto prompt = seq(1, 17);
  run_request(kv, prompt, pin_all(16, seconds(300)), t0);
  kv.expire_pins(t0 + seconds(299));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 4);
  kv.expire_pins(t0 + seconds(300));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 0);
  EXPECT_EQ(kv.pin_stats().idle_pinned_blocks, 0);
  EXPECT_EQ(kv.pin_stats().expired, 4);
  EXPECT_EQ(kv.num_free_blocks(), 8);
  // Looked at without taking it: a hit would count as reuse and protect it (kv_manager.h).
  EXPECT_EQ(kv.cached_prefix_tokens(prompt, 0), 16) << "still cached until space is needed";
  // Another (unpinned) prefix was used after: the expired blocks go before it.
  const auto other = seq(500, 9);
  run_request(kv, other, {}, t0 + seconds(302));
  RequestBlocks taker;
  ASSERT_TRUE(kv.allocate_slots(taker, 4 * 4));
  kv.free(taker, t0 + seconds(303));
  EXPECT_EQ(probe(kv, other, t0 + seconds(304)), 8);
}

// Each hit renews the pin for its TTL from the hit.
TEST(KvRetention, AHitRenewsThePin) {
  KvManager kv(8, 4);
  const auto prompt = seq(1, 17);
  run_request(kv, prompt, pin_all(16, seconds(300)), t0);
  EXPECT_EQ(probe(kv, prompt, t0 + seconds(200)), 16);
  EXPECT_EQ(kv.pin_stats().refreshed, 4);
  kv.expire_pins(t0 + seconds(499));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 4);
  kv.expire_pins(t0 + seconds(500));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 0);
}

// A block held by a request when its TTL passes loses the pin when the request frees it.
TEST(KvRetention, APinExpiringWhileInUseEndsWhenFreed) {
  KvManager kv(8, 4);
  const auto prompt = seq(1, 17);
  run_request(kv, prompt, pin_all(16, seconds(300)), t0);
  RequestBlocks holder;
  ASSERT_EQ(kv.acquire_cached_prefix(holder, prompt, 0, t0 + seconds(10)), 16);  // renews to t0 + 310
  kv.expire_pins(t0 + seconds(400));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 4) << "held blocks are not on the expiry list";
  kv.free(holder, t0 + seconds(400));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 0);
  EXPECT_EQ(kv.num_free_blocks(), 8);
}

// An owner's quota caps its pinned blocks; the rest is cached as usual and reported as denied.
TEST(KvRetention, TheOwnerQuotaCapsItsPinsAndReportsTheRest) {
  KvManager kv(16, 4);
  const PinOutcome a = run_request(kv, seq(1, 17), pin_all(16, seconds(300), /*owner=*/7, /*quota=*/3), t0);
  EXPECT_EQ(a.written_tokens(), 12);
  EXPECT_EQ(a.denied_tokens, 4);
  EXPECT_EQ(kv.pinned_blocks_of(7), 3);
  EXPECT_EQ(kv.pin_stats().denied_quota, 1);
  // Another owner has its own quota.
  const PinOutcome b = run_request(kv, seq(100, 9), pin_all(8, seconds(300), /*owner=*/8, /*quota=*/3), t0);
  EXPECT_EQ(b.written_tokens(), 8);
  EXPECT_EQ(b.denied_tokens, 0);
  // Expiry gives the quota back.
  kv.expire_pins(t0 + seconds(300));
  const PinOutcome c = run_request(kv, seq(200, 13), pin_all(12, seconds(300), /*owner=*/7, /*quota=*/3), t0 + seconds(301));
  EXPECT_EQ(c.written_tokens(), 12);
  EXPECT_EQ(c.denied_tokens, 0);
}

// The pool-wide limit holds whatever the owners' quotas.
TEST(KvRetention, ThePoolLimitHoldsAcrossOwners) {
  KvManager kv(16, 4);
  EXPECT_EQ(kv.pin_limit(), 8) << "default: half the pool";
  kv.set_pin_limit(5);
  run_request(kv, seq(1, 17), pin_all(16, seconds(300), 1), t0);
  const PinOutcome b = run_request(kv, seq(100, 17), pin_all(16, seconds(300), 2), t0);
  EXPECT_EQ(b.written_tokens(), 4);
  EXPECT_EQ(b.denied_tokens, 12);
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 5);
  EXPECT_EQ(kv.pin_stats().denied_pool, 3);
}

// Writes are the pinned tokens a request computed, by TTL (the longest breakpoint at or after a
// block); a later request reading them writes nothing and renews them.
TEST(KvRetention, WritesAreCountedByTtlAndReadsAreNotWrites) {
  KvManager kv(16, 4);
  const auto prompt = seq(1, 21);  // 5 full blocks
  const PinRequest two{.breakpoints = {{.num_tokens = 9, .ttl = seconds(3600)}, {.num_tokens = 16, .ttl = seconds(300)}},
                       .owner = 1,
                       .owner_quota_blocks = -1};
  EXPECT_EQ(two.num_blocks(4), 4);
  EXPECT_EQ(two.ttl_of_block(1, 4), seconds(3600));
  EXPECT_EQ(two.ttl_of_block(2, 4), seconds(300));
  EXPECT_EQ(two.ttl_of_block(4, 4), seconds(0));
  const PinOutcome first = run_request(kv, prompt, two, t0);
  EXPECT_EQ(first.written_tokens_by_ttl_s, (std::map<int64_t, int64_t>{{300, 8}, {3600, 8}}));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 4) << "the 5th block is past every breakpoint";
  const PinOutcome second = run_request(kv, prompt, two, t0 + seconds(10));
  EXPECT_EQ(second.written_tokens(), 0);
  kv.expire_pins(t0 + seconds(311));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 2) << "the 5-minute blocks renewed at t0+10 expire; the 1-hour ones stay";
}

// When another request cached the same prefix first, the pin goes to that cached block.
TEST(KvRetention, APinOnADuplicatePrefixPinsTheCachedBlock) {
  KvManager kv(16, 4);
  const auto prompt = seq(1, 9);
  RequestBlocks a, b;
  kv.acquire_cached_prefix(a, prompt, 0, t0);
  kv.acquire_cached_prefix(b, prompt, 0, t0);
  ASSERT_TRUE(kv.allocate_slots(a, 9));
  ASSERT_TRUE(kv.allocate_slots(b, 9));
  kv.cache_full_blocks(a, prompt, 9, 0);
  kv.cache_full_blocks(b, prompt, 9, 0);
  PinOutcome outcome;
  kv.apply_pins(b, pin_all(8, seconds(300)), outcome, t0);
  EXPECT_EQ(outcome.written_tokens(), 8);
  kv.free(a, t0);
  kv.free(b, t0);
  EXPECT_EQ(kv.pin_stats().idle_pinned_blocks, 2);
  churn(kv, 3, t0 + seconds(1));
  EXPECT_EQ(probe(kv, prompt, t0 + seconds(2)), 8);
}

// allocate_slots gives up idle pins only when allowed, soonest to expire first.
TEST(KvRetention, IdlePinsYieldOnlyWhenAllowedSoonestFirst) {
  KvManager kv(8, 4);
  kv.set_pin_limit(8);
  const auto soon = seq(1, 9), late = seq(100, 9);
  run_request(kv, soon, pin_all(8, seconds(300)), t0);
  run_request(kv, late, pin_all(8, seconds(3600)), t0);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  RequestBlocks r;
  EXPECT_FALSE(kv.allocate_slots(r, 5 * 4));
  EXPECT_TRUE(r.table.empty());
  EXPECT_TRUE(kv.allocate_slots(r, 6 * 4, /*may_take_pins=*/true));
  EXPECT_EQ(kv.pin_stats().yielded, 2);
  kv.free(r, t0 + seconds(1));
  EXPECT_EQ(probe(kv, late, t0 + seconds(2)), 8);
  EXPECT_EQ(probe(kv, soon, t0 + seconds(2)), 0);
  RequestBlocks too_big;
  EXPECT_FALSE(kv.allocate_slots(too_big, 9 * 4, true));
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 2) << "a request that cannot fit anyway takes nothing";
}

// ---- the scheduler ------------------------------------------------------------------------------

struct SchedFixture {
  KvManager kv;
  Scheduler sched;
  std::vector<std::unique_ptr<SchedRequest>> requests;
  KvClock::time_point now = t0;

  SchedFixture(int64_t blocks, int64_t block_size) : kv(blocks, block_size), sched({.max_batch_tokens = 512, .max_running = 8}, kv) {
    kv.set_pin_limit(blocks);
  }
  SchedRequest* add(std::vector<int32_t> prompt, PinRequest pins = {}) {
    auto r = std::make_unique<SchedRequest>();
    r->id = requests.size();
    r->num_prompt_tokens = static_cast<int64_t>(prompt.size());
    r->tokens = std::move(prompt);
    r->pins = std::move(pins);
    r->arrival = now;
    sched.add(r.get());
    requests.push_back(std::move(r));
    return requests.back().get();
  }
  /// A 17-token request pinning its 4 full blocks for 5 minutes, computed and finished: its blocks
  /// stay as idle pins. Returns it (for its outcome).
  SchedRequest* finish_pinned_agent() {
    SchedRequest* agent = add(seq(1, 17), pin_all(16, seconds(300)));
    step();
    sched.remove(agent, now);
    return agent;
  }
  /// One step: every sampling chunk appends a token.
  SchedulerOutput step() {
    SchedulerOutput out = sched.schedule(now);
    sched.on_computed(out, now);
    for (const auto& c : out.chunks) {
      if (c.samples) c.request->tokens.push_back(7);
    }
    now += seconds(1);
    return out;
  }
};

// A running request that outgrows the free blocks takes idle pinned ones; nobody is preempted.
TEST(KvRetentionScheduler, PinsYieldBeforeARunningRequestIsPreempted) {
  SchedFixture f(8, 4);
  const SchedRequest* agent = f.finish_pinned_agent();
  EXPECT_EQ(f.kv.pin_stats().idle_pinned_blocks, 4);
  EXPECT_EQ(agent->pin_outcome.written_tokens(), 16);
  SchedRequest* other = f.add(seq(100, 12));
  int64_t preempted = 0;
  for (int i = 0; i < 12; ++i) preempted += f.step().num_preempted;  // grows to 24 tokens: 6 blocks
  EXPECT_EQ(preempted, 0);
  EXPECT_EQ(other->state, RequestState::kRunning);
  EXPECT_EQ(f.kv.pin_stats().yielded, 2);
  EXPECT_EQ(f.kv.pin_stats().pinned_blocks, 2);
}

// A waiting request does not take pinned blocks while others run; it waits for them to finish.
TEST(KvRetentionScheduler, WaitingRequestsDoNotTakePinsWhileOthersRun) {
  SchedFixture f(8, 4);
  f.finish_pinned_agent();
  SchedRequest* running = f.add(seq(100, 5));  // 2 blocks
  f.step();
  SchedRequest* waiting = f.add(seq(200, 9));  // 3 blocks: only 2 free
  f.step();
  EXPECT_EQ(waiting->state, RequestState::kWaiting);
  EXPECT_EQ(f.kv.pin_stats().pinned_blocks, 4);
  f.sched.remove(running, f.now);
  f.step();
  EXPECT_EQ(waiting->state, RequestState::kRunning);
  EXPECT_EQ(f.kv.pin_stats().pinned_blocks, 4);
}

// Pins do not hold a new arrival back for longer than max_prefill_wait_s (2 s here; a step is 1 s):
// past it, the waiting request takes the idle pins it needs although others run.
TEST(KvRetentionScheduler, AWaitingRequestTakesPinsOnceItHasWaitedTooLong) {
  SchedFixture f(8, 4);
  f.finish_pinned_agent();
  SchedRequest* running = f.add(seq(100, 5));  // 2 blocks, then a third as it grows
  f.step();
  SchedRequest* waiting = f.add(seq(200, 9));  // 3 blocks: only 1-2 free
  for (int waited_s = 0; waited_s <= 2; ++waited_s) {
    f.step();
    EXPECT_EQ(waiting->state, RequestState::kWaiting) << "waited " << waited_s << " s: not yet";
  }
  EXPECT_EQ(f.kv.pin_stats().pinned_blocks, 4);
  f.step();
  EXPECT_EQ(waiting->state, RequestState::kRunning) << "waited 3 s: it takes pins";
  EXPECT_EQ(running->state, RequestState::kRunning);
  EXPECT_GT(f.kv.pin_stats().yielded, 0);
}

// With nothing running, a waiting request that does not fit otherwise takes pins (no deadlock).
TEST(KvRetentionScheduler, WithNothingRunningAWaitingRequestTakesPins) {
  SchedFixture f(8, 4);
  f.finish_pinned_agent();
  SchedRequest* big = f.add(seq(100, 25));  // 7 blocks
  f.step();
  EXPECT_EQ(big->state, RequestState::kRunning);
  EXPECT_EQ(f.kv.pin_stats().yielded, 3);
}

// A second turn reads the pinned prefix (not a write) and writes only its new blocks.
TEST(KvRetentionScheduler, ASecondTurnReadsThePinnedPrefixAndWritesOnlyItsNewBlocks) {
  SchedFixture f(32, 4);
  auto turn1 = seq(1, 17);
  SchedRequest* first = f.add(turn1, pin_all(17, seconds(300)));
  f.step();
  f.sched.remove(first, f.now);
  EXPECT_EQ(first->num_cached_prompt_tokens, 0);
  EXPECT_EQ(first->pin_outcome.written_tokens(), 16);
  auto turn2 = turn1;
  for (int32_t t : seq(50, 12)) turn2.push_back(t);  // 29 tokens: 7 full blocks
  f.now += seconds(250);
  SchedRequest* second = f.add(turn2, pin_all(29, seconds(300)));
  f.step();
  EXPECT_EQ(second->num_cached_prompt_tokens, 16);
  EXPECT_EQ(second->pin_outcome.written_tokens(), 12);
  f.sched.remove(second, f.now);
  f.kv.expire_pins(t0 + seconds(400));
  EXPECT_EQ(f.kv.pin_stats().pinned_blocks, 7) << "the first turn's blocks were renewed by the second";
}

// ---- random stress --------------------------------------------------------------------------------

// Random requests over shared documents, some with pins (two owners, a quota), computed in chunks,
// freed in random order, while a clock moves and pins expire or yield. Checked every operation:
// blocks are held, free or idle-pinned (nothing lost), limits hold, and every hit's K/V is right.
class KvRetentionStress : public ::testing::TestWithParam<uint32_t> {};

TEST_P(KvRetentionStress, Invariants) {
  constexpr int64_t kBlocks = 24, kBlockSize = 4, kQuota = 6, kLimit = 10;
  std::mt19937 rng(GetParam());
  const auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  KvManager kv(kBlocks, kBlockSize);
  kv.set_pin_limit(kLimit);
  std::vector<std::vector<int32_t>> documents(4);
  for (auto& doc : documents) {
    for (int i = 0; i < 40; ++i) doc.push_back(static_cast<int32_t>(uniform(0, 3)));
  }
  struct Live {
    RequestBlocks blocks;
    std::vector<int32_t> tokens;
    std::vector<uint64_t> prefix;  // prefix[p]: hash of tokens[0..p]
    PinRequest pins;
    PinOutcome outcome;
    int64_t computed = 0;
  };
  const auto prefix_of = [](const std::vector<int32_t>& tokens) {
    std::vector<uint64_t> out;
    uint64_t h = 1;
    for (int32_t t : tokens) out.push_back(h = (h ^ static_cast<uint32_t>(t)) * 0x100000001b3ULL + (h >> 29));
    return out;
  };
  std::vector<uint64_t> shadow(kBlocks * kBlockSize, 0);
  std::vector<Live> live;
  KvClock::time_point now = t0;

  for (int op = 0; op < 4000; ++op) {
    now += seconds(uniform(0, 5));
    kv.expire_pins(now);
    const int64_t choice = uniform(0, 99);
    if (choice < 30 && live.size() < 12) {
      Live r;
      const auto& doc = documents[static_cast<size_t>(uniform(0, 3))];
      r.tokens.assign(doc.begin(), doc.begin() + uniform(1, 40));
      r.prefix = prefix_of(r.tokens);
      if (uniform(0, 1) == 1) r.pins = pin_all(uniform(1, static_cast<int64_t>(r.tokens.size())), seconds(uniform(1, 400)), uniform(1, 2), kQuota);
      const int64_t hit = kv.acquire_cached_prefix(r.blocks, r.tokens, 0, now);
      for (int64_t p = 0; p < hit; ++p) {
        const int32_t blk = r.blocks.table[static_cast<size_t>(p / kBlockSize)];
        ASSERT_EQ(shadow[static_cast<size_t>(blk * kBlockSize + p % kBlockSize)], r.prefix[static_cast<size_t>(p)]) << "op " << op;
      }
      r.computed = hit;
      live.push_back(std::move(r));
    } else if (choice < 80 && !live.empty()) {
      Live& r = live[static_cast<size_t>(uniform(0, static_cast<int64_t>(live.size()) - 1))];
      if (r.computed == static_cast<int64_t>(r.tokens.size())) continue;
      const int64_t n = uniform(1, static_cast<int64_t>(r.tokens.size()) - r.computed);
      if (!kv.allocate_slots(r.blocks, r.computed + n, /*may_take_pins=*/uniform(0, 1) == 1)) continue;
      for (int64_t p = r.computed; p < r.computed + n; ++p) {
        const int32_t blk = r.blocks.table[static_cast<size_t>(p / kBlockSize)];
        shadow[static_cast<size_t>(blk * kBlockSize + p % kBlockSize)] = r.prefix[static_cast<size_t>(p)];
      }
      r.computed += n;
      kv.cache_full_blocks(r.blocks, r.tokens, r.computed, 0);
      kv.apply_pins(r.blocks, r.pins, r.outcome, now);
    } else if (!live.empty()) {
      const size_t i = static_cast<size_t>(uniform(0, static_cast<int64_t>(live.size()) - 1));
      kv.free(live[i].blocks, now);
      live.erase(live.begin() + static_cast<long>(i));
    }
    // Nothing lost: every block is held, free, or kept only by its pin.
    std::set<int32_t> held;
    for (const Live& r : live) held.insert(r.blocks.table.begin(), r.blocks.table.end());
    const PinStats s = kv.pin_stats();
    ASSERT_EQ(static_cast<int64_t>(held.size()) + kv.num_free_blocks() + s.idle_pinned_blocks, kBlocks) << "op " << op;
    ASSERT_LE(s.pinned_blocks, kLimit) << "op " << op;
    ASSERT_LE(kv.pinned_blocks_of(1), kQuota);
    ASSERT_LE(kv.pinned_blocks_of(2), kQuota);
    ASSERT_EQ(kv.pinned_blocks_of(1) + kv.pinned_blocks_of(2), s.pinned_blocks);
  }
  // The run went through every path: pins made, renewed, expired, yielded and denied.
  const PinStats s = kv.pin_stats();
  EXPECT_GT(s.pinned, 0);
  EXPECT_GT(s.refreshed, 0);
  EXPECT_GT(s.expired, 0);
  EXPECT_GT(s.yielded, 0);
  EXPECT_GT(s.denied_quota + s.denied_pool, 0);
  for (Live& r : live) kv.free(r.blocks, now);
  kv.expire_pins(now + hours(1));
  EXPECT_EQ(kv.num_free_blocks(), kBlocks);
  EXPECT_EQ(kv.pin_stats().pinned_blocks, 0);
}

INSTANTIATE_TEST_SUITE_P(Seeds, KvRetentionStress, ::testing::Values(1u, 2u, 3u, 4u, 5u, 6u));

}  // namespace
}  // namespace tern::engine
