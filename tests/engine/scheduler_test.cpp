// Scheduler: continuous batching simulated without a model. A step is schedule() -> (the forward
// pass would run here) -> on_computed() -> append a "sampled" token to every chunk that samples ->
// remove() requests that generated all their tokens. Every step is checked against the scheduling
// rules: token budget, decodes first, chunk bookkeeping, max_running, KV blocks covering the chunks.

#include "engine/sched/scheduler.h"

#include <gtest/gtest.h>

#include "token_sequences.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <vector>

namespace tern::engine {
namespace {

using test_tokens::seq;

/// The token a request "samples" as its index-th generated token: deterministic, so a preempted
/// and recomputed request must end with exactly the same tokens.
int32_t sampled_token(uint64_t id, int64_t index) { return static_cast<int32_t>(100000 + id * 1000 + index); }

struct SimRequest {
  std::unique_ptr<SchedRequest> sched = std::make_unique<SchedRequest>();
  int64_t max_new = 0;
  int64_t generated = 0;
  bool done = false;
  int64_t tokens_computed = 0;  ///< sum of its chunks: the work the model would have done
  int first_step = -1;          ///< the step it was first scheduled in
  int finish_step = -1;
  std::vector<int> admissions;  ///< steps it was admitted in (more than one after preemptions)
  std::vector<int32_t> final_tokens;
};

class Sim {
 public:
  Sim(int64_t num_blocks, int64_t block_size, SchedulerConfig config, bool prefix_caching = true)
      : kv(num_blocks, block_size, prefix_caching), sched(config, kv) {}

  /// Queues a request; returns its index (= id).
  size_t add(std::vector<int32_t> prompt, int64_t max_new, uint64_t cache_key = 0) {
    auto r = std::make_unique<SimRequest>();
    r->sched->id = requests.size();
    r->sched->num_prompt_tokens = static_cast<int64_t>(prompt.size());
    r->sched->tokens = std::move(prompt);
    r->sched->cache_key = cache_key;
    r->sched->arrival = now;
    r->max_new = max_new;
    sched.add(r->sched.get());
    requests.push_back(std::move(r));
    return requests.size() - 1;
  }

  SchedRequest& req(size_t i) { return *requests[i]->sched; }
  SimRequest& sim(size_t i) { return *requests[i]; }

  /// One engine step, with every rule checked. Returns the scheduler's output (chunks' pointers
  /// stay valid: requests are never destroyed).
  SchedulerOutput step() {
    ++step_no;
    // Snapshot before scheduling.
    struct Before {
      RequestState state;
      int64_t computed;
      int64_t size;
      int64_t preemptions;
    };
    std::map<const SchedRequest*, Before> before;
    for (auto& r : requests) {
      if (r->done) continue;
      before[r->sched.get()] = {r->sched->state, r->sched->num_computed, static_cast<int64_t>(r->sched->tokens.size()),
                                r->sched->num_preemptions};
    }

    SchedulerOutput out = sched.schedule(now);
    if (true_cost) {
      // A simulated machine whose step time follows `true_cost` exactly: the engine would measure it.
      const StepCostModel machine(*true_cost);
      last_step_seconds = machine.predict(out.shape);
      sched.on_step_time(out, last_step_seconds);
      now += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(last_step_seconds));
    }
    const int64_t budget = sched.config().max_batch_tokens;

    // Token budget and totals.
    int64_t total = 0;
    for (const auto& c : out.chunks) total += c.num_tokens;
    EXPECT_EQ(total, out.num_tokens) << "step " << step_no;
    EXPECT_LE(out.num_tokens, budget) << "step " << step_no;
    EXPECT_LE(sched.num_running(), sched.config().max_running) << "step " << step_no;
    EXPECT_GE(kv.num_free_blocks(), 0);

    // Preemptions reported = requests whose preemption count went up, now waiting with no blocks.
    int64_t preempted = 0;
    for (auto& [r, b] : before) {
      if (r->num_preemptions > b.preemptions) {
        ++preempted;
        EXPECT_EQ(r->num_preemptions, b.preemptions + 1);
        EXPECT_EQ(b.state, RequestState::kRunning) << "only running requests are preempted";
        EXPECT_EQ(r->state, RequestState::kWaiting);
        EXPECT_TRUE(r->blocks.table.empty());
        EXPECT_EQ(r->num_computed, 0);
      }
    }
    EXPECT_EQ(preempted, out.num_preempted) << "step " << step_no;
    total_preemptions += out.num_preempted;

    // Chunks: one per request, consistent with the request, decodes first, then the running
    // requests' prefill chunks, then newly admitted requests.
    std::set<const SchedRequest*> in_output;
    int phase = 0;  // 0: decodes, 1: running prefills, 2: admissions
    for (const auto& c : out.chunks) {
      const SchedRequest* r = c.request;
      EXPECT_TRUE(in_output.insert(r).second) << "request scheduled twice in one step";
      if (!before.contains(r)) {
        ADD_FAILURE() << "step " << step_no << ": a chunk for an unknown or finished request";
        continue;
      }
      const Before& b = before.at(r);
      EXPECT_EQ(r->state, RequestState::kRunning);
      EXPECT_GE(c.num_tokens, 1);
      EXPECT_EQ(c.start, r->num_computed) << "chunk must start at the first uncomputed token";
      EXPECT_LE(c.start + c.num_tokens, static_cast<int64_t>(r->tokens.size()));
      EXPECT_EQ(c.samples, c.start + c.num_tokens == static_cast<int64_t>(r->tokens.size()));
      EXPECT_GE(static_cast<int64_t>(r->blocks.table.size()) * kv.block_size(), c.start + c.num_tokens)
          << "KV blocks must cover the chunk";
      int chunk_phase;
      if (b.state == RequestState::kRunning) {
        EXPECT_EQ(c.start, b.computed) << "a running request continues where it was";
        chunk_phase = (b.size - b.computed == 1) ? 0 : 1;
      } else {
        chunk_phase = 2;
        requests[r->id]->admissions.push_back(step_no);
        EXPECT_EQ(b.state, RequestState::kWaiting);
        EXPECT_EQ(out.num_preempted, 0) << "no admissions in a step that preempts";
      }
      // Shortest-first interleaves prompts in progress and admissions (one list, by work left).
      if (sched.config().prefill_order == PrefillOrder::kShortestFirst) chunk_phase = std::min(chunk_phase, 1);
      EXPECT_GE(chunk_phase, phase) << "step " << step_no << ": chunk order must be decodes, prefills, admissions";
      phase = std::max(phase, chunk_phase);
    }

    // Running requests not in the output keep their progress (and their blocks).
    for (auto& [r, b] : before) {
      if (b.state == RequestState::kRunning && r->state == RequestState::kRunning && !in_output.contains(r)) {
        EXPECT_EQ(r->num_computed, b.computed) << "step " << step_no;
        EXPECT_GE(static_cast<int64_t>(r->blocks.table.size()) * kv.block_size(), r->num_computed);
      }
    }
    sched.on_computed(out);
    for (const auto& c : out.chunks) {
      SchedRequest* r = c.request;
      EXPECT_EQ(r->num_computed, c.start + c.num_tokens);
      SimRequest& s = *requests[r->id];
      s.tokens_computed += c.num_tokens;
      if (s.first_step < 0) s.first_step = step_no;
      if (!c.samples) continue;
      r->tokens.push_back(sampled_token(r->id, s.generated));
      ++s.generated;
      if (s.generated == s.max_new) {
        s.final_tokens = r->tokens;
        s.done = true;
        s.finish_step = step_no;
        sched.remove(r);
        EXPECT_EQ(r->state, RequestState::kFinished);
      }
    }
    chunk_log.push_back(out.chunks.size());
    return out;
  }

  /// Steps until no work is left (or the step limit, which fails the test).
  void run(int max_steps = 10000) {
    for (int i = 0; i < max_steps && sched.has_work(); ++i) {
      step();
      if (::testing::Test::HasFatalFailure()) return;
    }
    EXPECT_FALSE(sched.has_work()) << "requests did not finish within " << max_steps << " steps";
  }

  /// Every request finished with prompt + max_new tokens, generated in order; all blocks free.
  void expect_all_finished(const std::vector<std::vector<int32_t>>& prompts) {
    ASSERT_EQ(prompts.size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      const SimRequest& s = *requests[i];
      EXPECT_TRUE(s.done) << "request " << i;
      auto expected = prompts[i];
      for (int64_t g = 0; g < s.max_new; ++g) expected.push_back(sampled_token(i, g));
      EXPECT_EQ(s.final_tokens, expected) << "request " << i;
    }
    EXPECT_EQ(sched.num_running(), 0);
    EXPECT_EQ(sched.num_waiting(), 0);
    EXPECT_EQ(kv.num_free_blocks(), kv.num_blocks());
    EXPECT_DOUBLE_EQ(kv.usage(), 0.0);
  }

  KvManager kv;
  Scheduler sched;
  /// Simulated time (for the ageing rule) and, when set, the machine's true step cost.
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  std::optional<StepCostCoefficients> true_cost;
  double last_step_seconds = 0;
  std::vector<std::unique_ptr<SimRequest>> requests;
  std::vector<size_t> chunk_log;
  int step_no = 0;
  int64_t total_preemptions = 0;
};

// One request: prefill in one step (which samples the first token), then one decode per token.
TEST(SchedulerTest, SingleRequestLifecycle) {
  Sim sim(16, 4, {.max_batch_tokens = 512, .max_running = 8});
  const auto prompt = seq(1, 10);
  sim.add(prompt, 5);
  EXPECT_EQ(sim.sched.num_waiting(), 1);
  EXPECT_TRUE(sim.sched.has_work());

  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].start, 0);
  EXPECT_EQ(out.chunks[0].num_tokens, 10);
  EXPECT_TRUE(out.chunks[0].samples);
  EXPECT_EQ(sim.sched.num_running(), 1);
  EXPECT_EQ(sim.sched.num_waiting(), 0);
  EXPECT_EQ(sim.req(0).num_cached_prompt_tokens, 0);

  for (int i = 0; i < 4; ++i) {
    out = sim.step();
    ASSERT_EQ(out.chunks.size(), 1u);
    EXPECT_EQ(out.chunks[0].num_tokens, 1);  // decode
    EXPECT_EQ(out.chunks[0].start, 10 + i);
    EXPECT_TRUE(out.chunks[0].samples);
  }
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.sim(0).tokens_computed, 14);  // 10 prompt + 4 decodes (the 5th token is never fed back)
  sim.expect_all_finished({prompt});
}

// Nothing to do: an empty output.
TEST(SchedulerTest, EmptySchedule) {
  KvManager kv(4, 4);
  Scheduler sched({}, kv);
  EXPECT_FALSE(sched.has_work());
  SchedulerOutput out = sched.schedule();
  EXPECT_TRUE(out.chunks.empty());
  EXPECT_EQ(out.num_tokens, 0);
  EXPECT_EQ(out.num_preempted, 0);
}

// A prompt longer than the budget is prefilled in chunks of at most the budget; only the last
// chunk samples.
TEST(SchedulerTest, LongPromptIsChunked) {
  Sim sim(64, 4, {.max_batch_tokens = 16, .max_running = 8});
  const auto prompt = seq(1, 100);
  sim.add(prompt, 3);
  std::vector<int64_t> sizes;
  for (int i = 0; i < 7; ++i) {
    SchedulerOutput out = sim.step();
    ASSERT_EQ(out.chunks.size(), 1u);
    sizes.push_back(out.chunks[0].num_tokens);
    EXPECT_EQ(out.chunks[0].samples, i == 6);
    EXPECT_EQ(sim.sim(0).generated, i == 6 ? 1 : 0);
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{16, 16, 16, 16, 16, 16, 4}));
  sim.run();
  EXPECT_EQ(sim.sim(0).tokens_computed, 102);
  sim.expect_all_finished({prompt});
}

// Decodes come before prefill chunks and take their share of the budget first.
TEST(SchedulerTest, DecodesBeforePrefill) {
  Sim sim(64, 4, {.max_batch_tokens = 16, .max_running = 8});
  const size_t a = sim.add(seq(1, 6), 20);  // short: decodes from step 2
  const size_t b = sim.add(seq(1000, 60), 5);  // long: prefilled in chunks
  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.chunks.size(), 2u);
  EXPECT_EQ(out.chunks[0].request, &sim.req(a));
  EXPECT_EQ(out.chunks[0].num_tokens, 6);
  EXPECT_EQ(out.chunks[1].request, &sim.req(b));
  EXPECT_EQ(out.chunks[1].num_tokens, 10);  // the rest of the budget

  // While B prefills, A decodes first every step and B gets the remaining 15.
  for (int i = 0; i < 3; ++i) {
    out = sim.step();
    ASSERT_EQ(out.chunks.size(), 2u);
    EXPECT_EQ(out.chunks[0].request, &sim.req(a));
    EXPECT_EQ(out.chunks[0].num_tokens, 1);
    EXPECT_EQ(out.chunks[1].request, &sim.req(b));
    EXPECT_EQ(out.chunks[1].num_tokens, 15);
    EXPECT_FALSE(out.chunks[1].samples);
  }
  // 10 + 45 = 55 of 60: the last 5 come with A's decode; then both decode.
  out = sim.step();
  ASSERT_EQ(out.chunks.size(), 2u);
  EXPECT_EQ(out.chunks[1].num_tokens, 5);
  EXPECT_TRUE(out.chunks[1].samples);
  out = sim.step();
  ASSERT_EQ(out.chunks.size(), 2u);
  EXPECT_EQ(out.num_tokens, 2);
  sim.run();
}

// A newly arrived request's prefill never displaces running decodes: with a budget of 4 and three
// decoding requests, an arriving prompt gets 1 token per step until the decoders finish.
TEST(SchedulerTest, DecodesKeepTheirShareUnderLoad) {
  Sim sim(128, 4, {.max_batch_tokens = 4, .max_running = 8});
  for (int i = 0; i < 3; ++i) sim.add(seq(10 * i + 1, 1), 10);  // 1-token prompts: decode right away
  sim.step();                                                 // admits 3 (3 tokens)
  const size_t late = sim.add(seq(500, 40), 2);
  for (int s = 0; s < 5; ++s) {
    SchedulerOutput out = sim.step();
    ASSERT_EQ(out.chunks.size(), 4u);
    for (int d = 0; d < 3; ++d) EXPECT_EQ(out.chunks[static_cast<size_t>(d)].num_tokens, 1);
    EXPECT_EQ(out.chunks[3].request, &sim.req(late));
    EXPECT_EQ(out.chunks[3].num_tokens, 1);
  }
  sim.run();
}

// At most max_running requests hold blocks; the rest wait and are admitted as others finish.
TEST(SchedulerTest, MaxRunningRespected) {
  Sim sim(256, 4, {.max_batch_tokens = 512, .max_running = 2});
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 5; ++i) {
    prompts.push_back(seq(1000 * (i + 1), 8));
    sim.add(prompts.back(), 3 + i);
  }
  SchedulerOutput out = sim.step();
  EXPECT_EQ(out.chunks.size(), 2u);
  EXPECT_EQ(sim.sched.num_running(), 2);
  EXPECT_EQ(sim.sched.num_waiting(), 3);
  int max_seen = 0;
  while (sim.sched.has_work()) {
    sim.step();
    max_seen = std::max<int>(max_seen, static_cast<int>(sim.sched.num_running()));
    ASSERT_LT(sim.step_no, 1000);
  }
  EXPECT_EQ(max_seen, 2);
  sim.expect_all_finished(prompts);
}

// Waiting requests are admitted first come, first served.
TEST(SchedulerTest, FcfsAdmission) {
  Sim sim(256, 4, {.max_batch_tokens = 64, .max_running = 3});
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) {
    prompts.push_back(seq(1000 * (i + 1), std::uniform_int_distribution<int64_t>(1, 40)(rng)));
    sim.add(prompts.back(), std::uniform_int_distribution<int64_t>(1, 6)(rng));
  }
  sim.run();
  for (size_t i = 1; i < sim.requests.size(); ++i) {
    EXPECT_LE(sim.sim(i - 1).first_step, sim.sim(i).first_step) << "request " << i << " admitted before " << i - 1;
  }
  sim.expect_all_finished(prompts);
}

// A waiting request that does not fit blocks the queue: a later, smaller one does not overtake it.
TEST(SchedulerTest, FcfsHeadOfLineBlocksSmallerRequests) {
  Sim sim(8, 4, {.max_batch_tokens = 512, .max_running = 8});
  const size_t big_running = sim.add(seq(1, 20), 4);   // 5 blocks, then 6 with its tokens
  sim.step();
  const size_t big_waiting = sim.add(seq(100, 16), 2);  // 4 blocks: does not fit (3 free)
  const size_t small = sim.add(seq(200, 3), 2);         // 1 block: would fit
  while (!sim.sim(big_running).done) {
    sim.step();
    if (sim.sim(big_running).done) break;  // its blocks are free from now on
    EXPECT_EQ(sim.req(big_waiting).state, RequestState::kWaiting) << "step " << sim.step_no;
    EXPECT_EQ(sim.req(small).state, RequestState::kWaiting) << "step " << sim.step_no << ": overtook the queue head";
    ASSERT_LT(sim.step_no, 100);
  }
  EXPECT_GE(sim.step_no, 4);  // the head really waited
  sim.run();
  EXPECT_LE(sim.sim(big_waiting).first_step, sim.sim(small).first_step);
}

/// Three requests of 8 prompt + 8 generated tokens: 4 blocks of 4 each, 12 in all.
std::vector<std::vector<int32_t>> add_three_requests(Sim& sim) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) {
    prompts.push_back(seq(1000 * (i + 1), 8));
    sim.add(prompts.back(), 8);
  }
  return prompts;
}

// With a small KV pool, running requests outgrow it: the newest is preempted, recomputed later, and
// every request still finishes with exactly the tokens it would have had without preemption.
TEST(SchedulerTest, PreemptionWhenBlocksRunOut) {
  // 3 requests of 8 + 8 tokens need 4 blocks each (12); the pool has 8.
  Sim sim(8, 4, {.max_batch_tokens = 512, .max_running = 8});
  const auto prompts = add_three_requests(sim);
  sim.run();
  EXPECT_GT(sim.total_preemptions, 0);
  int64_t preempted_requests = 0;
  for (size_t i = 0; i < sim.requests.size(); ++i) {
    if (sim.req(i).num_preemptions > 0) {
      ++preempted_requests;
      // Recompute: it computed more than its 8 + 7 tokens in all.
      EXPECT_GT(sim.sim(i).tokens_computed, 15) << "request " << i;
    }
    EXPECT_EQ(static_cast<int64_t>(sim.sim(i).final_tokens.size()), 16) << "request " << i;
  }
  EXPECT_GT(preempted_requests, 0);
  sim.expect_all_finished(prompts);
}

// Same as above without prefix caching: recompute from scratch still finishes correctly.
TEST(SchedulerTest, PreemptionWithoutPrefixCaching) {
  Sim sim(8, 4, {.max_batch_tokens = 512, .max_running = 8}, /*prefix_caching=*/false);
  const auto prompts = add_three_requests(sim);
  sim.run();
  EXPECT_GT(sim.total_preemptions, 0);
  sim.expect_all_finished(prompts);
}

// Preemption picks the newest running request and puts it at the front of the queue; it keeps its
// generated tokens and its first-admission cache statistic.
TEST(SchedulerTest, PreemptedRequestGoesToFrontOfQueue) {
  // A (8-token prompt: 2 full blocks) and B (7 tokens: 2 blocks with a free slot) fill 4 blocks.
  // After the prefill A (older) needs a 3rd block for its 9th token: B, the newest, must go.
  Sim sim(4, 4, {.max_batch_tokens = 512, .max_running = 8});
  const size_t a = sim.add(seq(1, 8), 6);
  const size_t b = sim.add(seq(100, 7), 6);
  sim.step();
  ASSERT_EQ(sim.req(a).state, RequestState::kRunning);
  ASSERT_EQ(sim.req(b).state, RequestState::kRunning);
  SchedulerOutput out = sim.step();
  EXPECT_EQ(out.num_preempted, 1);
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].request, &sim.req(a));
  EXPECT_EQ(sim.req(a).state, RequestState::kRunning);
  EXPECT_EQ(sim.req(b).state, RequestState::kWaiting);
  EXPECT_EQ(sim.req(b).num_preemptions, 1);
  EXPECT_EQ(sim.req(b).tokens.size(), 8u);           // keeps its generated token
  EXPECT_EQ(sim.req(b).num_cached_prompt_tokens, 0);  // fixed at first admission
  EXPECT_EQ(sim.sched.num_waiting(), 1);

  const size_t c = sim.add(seq(300, 2), 1);  // arrives later: must queue behind the preempted one
  sim.run();
  ASSERT_EQ(sim.sim(b).admissions.size(), 2u);
  EXPECT_LE(sim.sim(b).admissions[1], sim.sim(c).first_step);
  sim.expect_all_finished({seq(1, 8), seq(100, 7), seq(300, 2)});
}

// The header's policy: "When KV blocks run out, the most recently admitted running request is
// preempted." Here the newest request (B) is the one that needs a block; B itself should go back to
// the queue and the older A keep running.
TEST(SchedulerTest, NewestRequestIsPreemptedEvenWhenItIsTheOneGrowing) {
  Sim sim(4, 4, {.max_batch_tokens = 512, .max_running = 8});
  const size_t a = sim.add(seq(1, 7), 6);    // 2 blocks, 1 slot left
  const size_t b = sim.add(seq(100, 8), 6);  // 2 full blocks
  sim.step();                                // A: 8 tokens (fits), B: 9 tokens (needs a 3rd block)
  SchedulerOutput out = sim.step();
  EXPECT_EQ(out.num_preempted, 1);
  EXPECT_EQ(sim.req(a).state, RequestState::kRunning) << "the older request was preempted";
  EXPECT_EQ(sim.req(a).num_preemptions, 0);
  EXPECT_EQ(sim.req(b).state, RequestState::kWaiting);
  EXPECT_EQ(sim.req(b).num_preemptions, 1);
}

// A request sharing a cached prefix with a finished one starts past the prefix and computes less.
TEST(SchedulerTest, PrefixCacheHitAcrossRequests) {
  Sim sim(64, 4, {.max_batch_tokens = 512, .max_running = 8});
  const auto system = seq(1, 24);  // 6 blocks
  auto pa = system;
  for (int32_t t : seq(500, 5)) pa.push_back(t);
  auto pb = system;
  for (int32_t t : seq(700, 6)) pb.push_back(t);

  const size_t a = sim.add(pa, 3);
  sim.run();
  EXPECT_EQ(sim.req(a).num_cached_prompt_tokens, 0);
  EXPECT_EQ(sim.sim(a).tokens_computed, 29 + 2);

  const size_t b = sim.add(pb, 3);
  SchedulerOutput out = sim.step();
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(sim.req(b).num_cached_prompt_tokens, 24);
  EXPECT_EQ(out.chunks[0].start, 24);
  EXPECT_EQ(out.chunks[0].num_tokens, 6);
  sim.run();
  EXPECT_EQ(sim.sim(b).tokens_computed, 6 + 2);
  EXPECT_EQ(sim.kv.prefix_stats().hits, 24);
  EXPECT_EQ(sim.kv.prefix_stats().queries, 29 + 30);

  // The identical prompt again: everything but the last token (whole blocks: 28 of 29).
  const size_t c = sim.add(pa, 1);
  sim.run();
  EXPECT_EQ(sim.req(c).num_cached_prompt_tokens, 28);
  EXPECT_EQ(sim.sim(c).tokens_computed, 1);

  // A different cache key (another model or salt) gets nothing.
  const size_t d = sim.add(pa, 1, /*cache_key=*/99);
  sim.run();
  EXPECT_EQ(sim.req(d).num_cached_prompt_tokens, 0);
  EXPECT_EQ(sim.sim(d).tokens_computed, 29);
  sim.expect_all_finished({pa, pb, pa, pa});
}

// Shortest-first prefill: a returning conversation whose history is cached (little work left) goes
// ahead of a long uncached prompt that is already part-way through its prefill; FCFS makes it wait.
TEST(SchedulerTest, ShortestFirstServesACachedConversationAheadOfALongPrompt) {
  for (const PrefillOrder order : {PrefillOrder::kFcfs, PrefillOrder::kShortestFirst}) {
    SCOPED_TRACE(order == PrefillOrder::kFcfs ? "fcfs" : "shortest");
    Sim sim(256, 4, {.max_batch_tokens = 32, .max_running = 8, .prefill_order = order});
    const auto history = seq(1, 96);
    sim.add(history, 1);
    sim.run();  // the conversation's history is now cached
    const size_t long_prompt = sim.add(seq(5000, 400), 2);
    sim.step();
    ASSERT_EQ(sim.req(long_prompt).state, RequestState::kRunning);
    auto next_turn = history;
    for (int32_t t : seq(900, 6)) next_turn.push_back(t);  // 102 tokens, 96 of them cached: 6 to compute
    const size_t returning = sim.add(next_turn, 2);
    const auto first = sim.step();
    if (order == PrefillOrder::kShortestFirst) {
      ASSERT_FALSE(first.chunks.empty());
      EXPECT_EQ(first.chunks[0].request, &sim.req(returning)) << "the 6 tokens left go first";
      EXPECT_EQ(first.chunks[0].num_tokens, 6);
      EXPECT_EQ(sim.req(returning).num_cached_prompt_tokens, 96);
    } else {
      EXPECT_EQ(sim.req(returning).state, RequestState::kWaiting) << "behind the running prompt's chunks";
    }
    sim.run();
    if (order == PrefillOrder::kShortestFirst) {
      EXPECT_LT(sim.sim(returning).finish_step, sim.sim(long_prompt).finish_step);
    } else {
      EXPECT_GT(sim.sim(returning).first_step, sim.sim(long_prompt).first_step + 10);
    }
  }
}

// Shortest-first never starves a long prompt: once it has waited past max_prefill_wait_s, it goes first
// in one step of every four even while short prompts would take every step's whole budget.
TEST(SchedulerTest, ShortestFirstGivesTheLongestWaitingPromptAShareOfSteps) {
  Sim sim(512, 4, {.max_batch_tokens = 16, .max_running = 64, .max_prefill_wait_s = 0.05,
                   .prefill_order = PrefillOrder::kShortestFirst});
  sim.true_cost = StepCostCoefficients{.fixed_s = 0.01, .per_token_s = 0, .per_context_s = 0, .per_logit_row_s = 0};  // 10 ms steps
  const size_t long_prompt = sim.add(seq(7000, 200), 1);
  int32_t next = 10000;
  std::vector<int> long_steps;  // steps whose chunks include the long prompt
  for (int i = 0; i < 400 && !sim.sim(long_prompt).done; ++i) {
    sim.add(seq(next, 16), 1);  // a short prompt every step: alone, they would take every step's budget
    next += 100;
    const SchedulerOutput out = sim.step();
    for (const ScheduledChunk& c : out.chunks) {
      if (c.request == &sim.req(long_prompt)) long_steps.push_back(sim.step_no);
    }
  }
  ASSERT_TRUE(sim.sim(long_prompt).done) << "starved";
  // It waits 0.05 s (5 steps) to age; then 200 tokens at 16 per step take 13 of its steps, one in four.
  ASSERT_GE(long_steps.size(), 13u);
  EXPECT_GE(long_steps.front(), 5);
  for (size_t i = 1; i < long_steps.size(); ++i) EXPECT_LE(long_steps[i] - long_steps[i - 1], 4) << "step " << long_steps[i];
  EXPECT_LE(sim.sim(long_prompt).finish_step, 5 + 4 * 13 + 4);
  // The short prompts keep three steps in four: at most a quarter of the steps' budget went elsewhere.
  int shorts_done = 0;
  for (size_t i = 0; i < sim.requests.size(); ++i) shorts_done += i != long_prompt && sim.sim(i).done;
  EXPECT_GE(shorts_done, sim.step_no * 3 / 4 - 2);
}

TEST(SchedulerTest, PrefillOrderNames) {
  EXPECT_EQ(parse_prefill_order("fcfs"), PrefillOrder::kFcfs);
  EXPECT_EQ(parse_prefill_order("shortest"), PrefillOrder::kShortestFirst);
  EXPECT_EQ(parse_prefill_order("sjf"), std::nullopt);
}

// Prefix caching disabled: the same prompt is computed in full every time.
TEST(SchedulerTest, PrefixCachingDisabled) {
  Sim sim(64, 4, {.max_batch_tokens = 512, .max_running = 8}, /*prefix_caching=*/false);
  sim.add(seq(1, 29), 2);
  sim.run();
  const size_t b = sim.add(seq(1, 29), 2);
  sim.run();
  EXPECT_EQ(sim.req(b).num_cached_prompt_tokens, 0);
  EXPECT_EQ(sim.sim(b).tokens_computed, 30);
}

// Two running requests can share a cached prefix while both are alive.
TEST(SchedulerTest, ConcurrentRequestsShareBlocks) {
  Sim sim(64, 4, {.max_batch_tokens = 512, .max_running = 8});
  const auto prompt = seq(1, 17);
  const size_t a = sim.add(prompt, 10);
  sim.step();  // A computed and cached 4 full blocks
  const size_t b = sim.add(prompt, 10);
  sim.step();
  EXPECT_EQ(sim.req(b).num_cached_prompt_tokens, 16);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(sim.req(a).blocks.table[i], sim.req(b).blocks.table[i]);
  // A holds 5 blocks (18 tokens); B shares A's first 4 and adds 1 of its own.
  EXPECT_EQ(sim.kv.num_blocks() - sim.kv.num_free_blocks(), 6);
  sim.run();
  sim.expect_all_finished({prompt, prompt});
}

// remove() of a waiting or part-way request (a cancel) frees its blocks at once.
TEST(SchedulerTest, RemoveCancelsWaitingAndRunning) {
  Sim sim(16, 4, {.max_batch_tokens = 8, .max_running = 8});
  const size_t a = sim.add(seq(1, 30), 5);
  const size_t b = sim.add(seq(100, 4), 5);
  sim.step();  // A: first 8-token chunk; B waits (no budget)
  EXPECT_EQ(sim.req(a).state, RequestState::kRunning);
  EXPECT_EQ(sim.req(b).state, RequestState::kWaiting);
  EXPECT_EQ(sim.kv.num_free_blocks(), 14);

  sim.sched.remove(&sim.req(a));  // mid-prefill
  sim.sim(a).done = true;
  EXPECT_EQ(sim.req(a).state, RequestState::kFinished);
  EXPECT_EQ(sim.kv.num_free_blocks(), 16);
  EXPECT_EQ(sim.sched.num_running(), 0);

  sim.sched.remove(&sim.req(b));  // never admitted
  sim.sim(b).done = true;
  EXPECT_EQ(sim.sched.num_waiting(), 0);
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_TRUE(sim.sched.schedule().chunks.empty());
}

// Prefix-cache statistics should count each request's prompt once per admission, not once per
// step it waits at the head of the queue.
TEST(SchedulerTest, PrefixStatsCountedOncePerAdmission) {
  Sim sim(8, 4, {.max_batch_tokens = 512, .max_running = 8});
  const auto cached = seq(1, 9);
  sim.add(cached, 1);  // caches 2 blocks, then finishes
  sim.run();
  std::vector<int32_t> blocked_prompt = seq(1, 8);
  for (int32_t t : seq(50, 12)) blocked_prompt.push_back(t);  // 20 tokens: 5 blocks, 8 cached
  sim.add(seq(100, 21), 3);                                   // 6 blocks, for 3 steps
  sim.add(blocked_prompt, 1);                                 // waits until the first finishes
  sim.run();
  EXPECT_EQ(sim.kv.prefix_stats().queries, 9 + 21 + 20);
  EXPECT_EQ(sim.kv.prefix_stats().hits, 8);
}

// Random workload: many requests with random prompts (some sharing prefixes), random lengths and
// arrival times, a small KV pool and budget. Every step is checked by Sim::step(); at the end all
// requests finished with the right tokens and every block is free.
class SchedulerStress : public ::testing::TestWithParam<uint32_t> {};

TEST_P(SchedulerStress, RandomWorkload) {
  std::mt19937 rng(GetParam());
  const auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const int64_t block_size = uniform(2, 8);
  const int64_t max_len = 48;
  // Enough blocks for the largest request, few enough to force preemption.
  const int64_t num_blocks = (max_len + block_size - 1) / block_size + uniform(0, 12);
  Sim sim(num_blocks, block_size,
          {.max_batch_tokens = uniform(4, 64), .max_running = uniform(1, 8),
           .prefill_order = GetParam() % 2 == 1 ? PrefillOrder::kShortestFirst : PrefillOrder::kFcfs},
          GetParam() % 4 != 0);
  const std::vector<int32_t> shared = seq(1, 32);

  std::vector<std::vector<int32_t>> prompts;
  int arrived = 0;
  for (int guard = 0; guard < 20000 && (arrived < 40 || sim.sched.has_work()); ++guard) {
    // 0-2 arrivals per step.
    for (int64_t n = uniform(0, 2); n > 0 && arrived < 40; --n, ++arrived) {
      std::vector<int32_t> prompt;
      if (uniform(0, 1) == 1) prompt.assign(shared.begin(), shared.begin() + uniform(1, 32));
      for (int64_t i = uniform(prompt.empty() ? 1 : 0, 12); i > 0; --i) prompt.push_back(static_cast<int32_t>(uniform(0, 50)));
      const int64_t max_new = uniform(1, max_len - static_cast<int64_t>(prompt.size()));
      prompts.push_back(prompt);
      sim.add(prompt, max_new, uniform(0, 3) == 0 ? 7 : 0);
    }
    sim.step();
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(arrived, 40);
  sim.expect_all_finished(prompts);
  for (size_t i = 0; i < sim.requests.size(); ++i) {
    const auto& r = sim.req(i);
    EXPECT_GE(r.num_cached_prompt_tokens, 0);
    EXPECT_LT(r.num_cached_prompt_tokens, r.num_prompt_tokens);
    EXPECT_EQ(r.num_cached_prompt_tokens % block_size, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SchedulerStress, ::testing::Range(1u, 49u));

// ---- Inter-token target (stall-free batching) ----

// The machine: 4 ms a step, 1 ms a token, 1 us per attention pair. 8 streams decode; a 1,500-token
// prompt arrives. Without a target its 512-token chunks make steps of ~0.6 s, stalling every stream;
// with a 50 ms target each step that carries decodes stays under it once the model has learned the
// machine (the prior is deliberately wrong by 3-5x), and the prompt still gets through.
struct ItlRun {
  double max_decode_step_s = 0;     ///< slowest step that carried decodes, after warm-up
  std::vector<double> mixed_step_s; ///< steps that carried decodes and a prompt chunk
  std::vector<double> decode_step_s; ///< steps that carried decodes and more than the floor, from the prompt's arrival on
  int floor_steps = 0;
  int prompt_first_token_step = -1;
  int64_t itl_limited_steps = 0;
};

ItlRun run_long_prompt_among_streams(double itl_target_s, double max_prefill_wait_s = 1e9) {
  SchedulerConfig config{.max_batch_tokens = 512, .max_running = 64, .itl_target_s = itl_target_s,
                         .min_prefill_chunk = 16, .max_prefill_wait_s = max_prefill_wait_s,
                         .step_cost_prior = {.fixed_s = 0.02, .per_token_s = 0.003, .per_context_s = 5e-6, .per_logit_row_s = 0}};
  Sim sim(1024, 16, config);
  sim.true_cost = StepCostCoefficients{.fixed_s = 0.004, .per_token_s = 0.001, .per_context_s = 1e-6, .per_logit_row_s = 0};
  for (int i = 0; i < 8; ++i) sim.add(seq(1000 * i, 64), 400);
  ItlRun out;
  for (int i = 0; i < 60; ++i) sim.step();  // streams prefilled and decoding; the model has learned
  const size_t prompt = sim.add(seq(50000, 1500), 4);
  for (int i = 0; i < 400 && sim.sim(prompt).generated == 0; ++i) {
    const SchedulerOutput step = sim.step();
    if (step.num_decode_tokens > 0) out.max_decode_step_s = std::max(out.max_decode_step_s, sim.last_step_seconds);
    if (step.num_decode_tokens > 0 && step.num_prefill_tokens > 0) out.mixed_step_s.push_back(sim.last_step_seconds);
    // Steps where the prompt got only its guaranteed floor may exceed the target: that is the rule.
    if (step.num_decode_tokens > 0 && step.num_prefill_tokens != 16) out.decode_step_s.push_back(sim.last_step_seconds);
    if (step.num_prefill_tokens == 16) ++out.floor_steps;
    if (step.is_itl_limited) ++out.itl_limited_steps;
  }
  out.prompt_first_token_step = sim.sim(prompt).first_step >= 0 && sim.sim(prompt).generated > 0 ? sim.step_no : -1;
  return out;
}

TEST(SchedulerItlTarget, StepsWithDecodesStayUnderTheTarget) {
  const ItlRun without = run_long_prompt_among_streams(0);
  const ItlRun with = run_long_prompt_among_streams(0.05);
  std::printf("slowest decode step: %.1f ms without a target, %.1f ms with 50 ms\n", without.max_decode_step_s * 1e3,
              with.max_decode_step_s * 1e3);
  EXPECT_GT(without.max_decode_step_s, 0.3) << "the workload must stall streams without a target";
  // The first steps with a prompt chunk are planned with a model learned from decode-only steps, in
  // which the per-token and fixed terms cannot be told apart: they may overshoot by that model's error.
  // From the third on, the model has seen the new shape and every step is under the target.
  ASSERT_GT(with.decode_step_s.size(), 3u);
  EXPECT_LE(with.max_decode_step_s, 0.05 * 1.2);
  for (size_t i = 2; i < with.decode_step_s.size(); ++i) EXPECT_LE(with.decode_step_s[i], 0.05 * 1.0001) << "step " << i;
  EXPECT_GT(with.itl_limited_steps, 0);
  EXPECT_EQ(without.itl_limited_steps, 0);
  EXPECT_GT(with.prompt_first_token_step, 0) << "the prompt must finish its prefill";
  // And the room under the target is used, not wasted: the model learned from decode-only steps
  // over-predicts a little at first (conservative), so the typical mixed step fills most of the target.
  std::vector<double> mixed = with.mixed_step_s;
  ASSERT_FALSE(mixed.empty());
  std::sort(mixed.begin(), mixed.end());
  std::printf("mixed steps: %zu (%d at the floor), median %.1f ms\n", mixed.size(), with.floor_steps, mixed[mixed.size() / 2] * 1e3);
  EXPECT_GE(mixed[mixed.size() / 2], 0.8 * 0.05);
}

TEST(SchedulerItlTarget, PromptsProgressEvenWhenDecodesAloneExceedTheTarget) {
  // 40 streams at 4 ms + 40 x 1 ms (+ attention) > 30 ms: no room under the target at all. The oldest
  // prompt still moves by min_prefill_chunk tokens a step, and after max_prefill_wait_s takes the budget.
  SchedulerConfig config{.max_batch_tokens = 256, .max_running = 64, .itl_target_s = 0.03, .min_prefill_chunk = 16,
                         .max_prefill_wait_s = 1.0,
                         .step_cost_prior = {.fixed_s = 0.004, .per_token_s = 0.001, .per_context_s = 1e-6, .per_logit_row_s = 0}};
  Sim sim(4096, 16, config);
  sim.true_cost = config.step_cost_prior;
  for (int i = 0; i < 40; ++i) sim.add(seq(1000 * i, 16), 1000);
  while (sim.sched.num_running() < 40 || sim.step().num_prefill_tokens > 0) {  // FCFS: older prompts first
    ASSERT_LT(sim.step_no, 500);
    if (sim.sched.num_running() < 40) sim.step();
  }
  const size_t prompt = sim.add(seq(90000, 2000), 2);
  const Clock::time_point arrived = sim.now;
  std::vector<int64_t> chunks;
  bool saw_aged = false;
  while (sim.sim(prompt).generated == 0 && sim.step_no < 2000) {
    const SchedulerOutput step = sim.step();
    int64_t mine = 0;
    for (const ScheduledChunk& c : step.chunks) if (c.request == &sim.req(prompt)) mine = c.num_tokens;
    const double waited_s = std::chrono::duration<double>(sim.now - arrived).count();
    if (mine > 16) {
      saw_aged = true;
      EXPECT_GE(waited_s, 1.0) << "more than the floor only once aged";
    }
    chunks.push_back(mine);
  }
  ASSERT_GT(sim.sim(prompt).generated, 0) << "the prompt starved";
  EXPECT_EQ(chunks.front(), 16) << "the floor, while the streams fill the target";
  EXPECT_TRUE(saw_aged) << "ageing never gave the prompt the full budget";
  for (int64_t c : chunks) EXPECT_GE(c, 16) << "the oldest prompt moves every step";
}

TEST(SchedulerItlTarget, RelativeTargetBoundsEveryStepByItsDecodesWithoutAgeing) {
  // 8 streams decoding, then three 1500-token prompts at once, with a 0.1 s max_prefill_wait that the
  // absolute target would answer with ageing: under "2x" no step that carries decodes is planned over
  // 2 x its decodes alone (the floor steps aside: the machine's fixed cost leaves room for more), the
  // learned model's plans hold on the simulated machine, and every prompt still finishes.
  SchedulerConfig config{.max_batch_tokens = 512, .max_running = 64, .itl_target_factor = 2.0, .min_prefill_chunk = 16,
                         .max_prefill_wait_s = 0.1,
                         .step_cost_prior = {.fixed_s = 0.02, .per_token_s = 0.003, .per_context_s = 5e-6, .per_logit_row_s = 0}};
  Sim sim(2048, 16, config);
  sim.true_cost = StepCostCoefficients{.fixed_s = 0.02, .per_token_s = 0.001, .per_context_s = 1e-6, .per_logit_row_s = 0};
  const StepCostModel machine(*sim.true_cost);
  for (int i = 0; i < 8; ++i) sim.add(seq(1000 * i, 64), 600);
  for (int i = 0; i < 60; ++i) sim.step();
  std::vector<size_t> prompts;
  for (int i = 0; i < 3; ++i) prompts.push_back(sim.add(seq(50000 + 5000 * i, 1500), 4));
  int limited = 0, planned = 0;
  double worst_ratio = 0;
  auto done = [&] {
    for (size_t p : prompts) if (sim.sim(p).generated == 0) return false;
    return true;
  };
  while (!done() && sim.step_no < 3000) {
    const SchedulerOutput step = sim.step();
    if (step.num_decode_tokens == 0 || step.num_prefill_tokens <= 16) continue;
    ++planned;
    limited += step.is_itl_limited;
    EXPECT_LE(step.predicted_seconds, 2.0 * step.decode_seconds * (1 + 1e-9)) << "step " << sim.step_no;
    StepShape decodes;
    for (const ScheduledChunk& c : step.chunks) {
      if (c.num_tokens == 1 && c.start >= c.request->num_prompt_tokens) decodes.add_chunk(c.start, 1, 1);
    }
    if (planned > 2) worst_ratio = std::max(worst_ratio, sim.last_step_seconds / machine.predict(decodes));
  }
  ASSERT_TRUE(done()) << "a prompt starved";
  EXPECT_GT(limited, 0);
  std::printf("%d mixed steps above the floor; slowest / its decodes alone: %.2f\n", planned, worst_ratio);
  EXPECT_GT(planned, 30);
  EXPECT_LE(worst_ratio, 2.0 * 1.05) << "after the model learned the mixed shape";
}

TEST(SchedulerItlTarget, ParsesDurationsAndMultiples) {
  SchedulerConfig config;
  ASSERT_TRUE(parse_itl_target("80ms", config));
  EXPECT_DOUBLE_EQ(config.itl_target_s, 0.08);
  EXPECT_EQ(config.itl_target_factor, 0);
  ASSERT_TRUE(parse_itl_target("1.4x", config));
  EXPECT_DOUBLE_EQ(config.itl_target_factor, 1.4);
  EXPECT_EQ(config.itl_target_s, 0);
  ASSERT_TRUE(parse_itl_target("off", config));
  EXPECT_EQ(config.itl_target_s, 0);
  EXPECT_EQ(config.itl_target_factor, 0);
  for (const char* bad : {"0.9x", "1x", "11x", "x", "1.4xx", "abc", "-5ms"}) {
    const auto result = parse_itl_target(bad, config);
    ASSERT_FALSE(result) << bad;
    EXPECT_NE(result.error().message.find(bad), std::string::npos) << result.error().message;
  }
}

// What tern serve's start-up log prints: the target in force, whichever form (the relative default
// used to print "off").
TEST(SchedulerItlTarget, DescribesTheTargetInForce) {
  SchedulerConfig config;
  ASSERT_TRUE(parse_itl_target(kDefaultItlTarget, config));
  EXPECT_EQ(describe_itl_target(config), "1.4x of the decode-only step");
  ASSERT_TRUE(parse_itl_target("2x", config));
  EXPECT_EQ(describe_itl_target(config), "2x of the decode-only step");
  ASSERT_TRUE(parse_itl_target("100ms", config));
  EXPECT_EQ(describe_itl_target(config), "100 ms");
  ASSERT_TRUE(parse_itl_target("off", config));
  EXPECT_EQ(describe_itl_target(config), "off");
}

TEST(SchedulerItlTarget, NoDecodesMeansTheWholeBudget) {
  // Only prompts in flight: nobody's inter-token latency is at stake, so chunks fill max_batch_tokens.
  SchedulerConfig config{.max_batch_tokens = 128, .max_running = 8, .itl_target_s = 0.001};
  Sim sim(256, 16, config);
  sim.add(seq(1, 300), 2);
  const SchedulerOutput first = sim.step();
  EXPECT_EQ(first.num_tokens, 128);
  EXPECT_EQ(first.num_prefill_tokens, 128);
  EXPECT_FALSE(first.is_itl_limited);
}

// ---- The step-time model ----

TEST(StepCostModel, RecoversTheMachinesCoefficients) {
  const StepCostCoefficients truth{.fixed_s = 0.006, .per_token_s = 0.0008, .per_context_s = 3e-7, .per_logit_row_s = 0.0005};
  StepCostModel model;  // the default prior, off by 2-3x
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> streams(1, 32), depth(0, 3000), chunk(0, 512), guesses(0, 4);
  std::normal_distribution<double> noise(0.0, 0.0005);
  for (int i = 0; i < 300; ++i) {
    StepShape shape;
    for (int64_t s = streams(rng); s > 0; --s) {
      const int64_t g = i % 2 == 0 ? guesses(rng) : 0;  // speculative steps: decodes with guesses, a row of logits each
      shape.add_chunk(depth(rng), 1 + g, 1 + g);
    }
    const int64_t n = chunk(rng);
    shape.add_chunk(depth(rng), n, n > 0 && i % 3 == 0 ? 1 : 0);
    const StepCostModel machine(truth);
    model.observe(shape, machine.predict(shape) + noise(rng));
  }
  const StepCostCoefficients& fitted = model.coefficients();
  EXPECT_NEAR(fitted.fixed_s, truth.fixed_s, 0.1 * truth.fixed_s);
  EXPECT_NEAR(fitted.per_token_s, truth.per_token_s, 0.05 * truth.per_token_s);
  EXPECT_NEAR(fitted.per_context_s, truth.per_context_s, 0.1 * truth.per_context_s);
  EXPECT_NEAR(fitted.per_logit_row_s, truth.per_logit_row_s, 0.1 * truth.per_logit_row_s);
  EXPECT_EQ(model.num_observed(), 300);
}

TEST(StepCostModel, AlikeStepsStayWellPosedAndNonNegative) {
  // Only one shape, over and over: the normal equations alone are singular; the prior keeps the fit
  // finite, and it still predicts that shape.
  StepCostModel model;
  StepShape shape;
  shape.add_chunk(100, 1);
  for (int i = 0; i < 500; ++i) model.observe(shape, 0.01);
  const StepCostCoefficients& fitted = model.coefficients();
  for (double c : {fitted.fixed_s, fitted.per_token_s, fitted.per_context_s, fitted.per_logit_row_s}) {
    EXPECT_TRUE(std::isfinite(c));
    EXPECT_GE(c, 0.0);
  }
  EXPECT_NEAR(model.predict(shape), 0.01, 0.0005);
  // A measurement that is not a time is ignored.
  model.observe(shape, std::nan(""));
  model.observe(shape, -1);
  EXPECT_EQ(model.num_observed(), 500);
}

TEST(StepCostModel, ContextPairsCountEveryQueryKeyPair) {
  StepShape shape;
  shape.add_chunk(0, 4);    // 1 + 2 + 3 + 4
  EXPECT_EQ(shape.context_pairs, 10);
  shape.add_chunk(100, 1, 1);  // one decode at depth 100 sees 101 positions
  EXPECT_EQ(shape.context_pairs, 111);
  EXPECT_EQ(shape.tokens, 5);
  EXPECT_EQ(shape.logit_rows, 1);
}

}  // namespace
}  // namespace tern::engine
