// Speculative decoding without a model: prompt lookup's guesses (engine/spec/ngram_proposer.h) and the
// scheduler's choice of how many guesses a step verifies (scheduler.h), on a prior step-time model.

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "engine/kv/kv_manager.h"
#include "engine/sched/scheduler.h"
#include "engine/spec/ngram_proposer.h"
#include "engine/spec/proposer.h"

namespace tern::engine {
namespace {

TEST(NgramProposer, ContinuesTheLatestEarlierOccurrenceOfTheLongestSuffix) {
  NgramProposer proposer(1, 3);
  std::vector<int32_t> draft;
  // "9 2 3" occurred once (then 7); "2 3" last occurred before 6: the longer match wins.
  std::vector<int32_t> tokens = {9, 2, 3, 7, 8, 2, 3, 6, 9, 2, 3};
  proposer.propose({tokens, 4}, draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{7, 8, 2, 3}));
  // Extended by the accepted tokens: the index grows with them; "3 7" now also ends the text.
  tokens.insert(tokens.end(), {7, 8});
  proposer.propose({tokens, 2}, draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{2, 3}));
  // The guess never runs past the text: "8 2 3 6 9 2 3 7 8" -> after the latest "7 8" comes "2 3 6 ...".
  proposer.propose({tokens, 100}, draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{2, 3, 6, 9, 2, 3, 7, 8}));
  // Nothing to continue: no guess.
  tokens.push_back(42);
  proposer.propose({tokens, 4}, draft);
  EXPECT_TRUE(draft.empty());
  proposer.propose({tokens, 0}, draft);
  EXPECT_TRUE(draft.empty());
}

TEST(NgramProposer, LatestOccurrenceWinsAndShortSuffixesBelowTheMinimumDoNotMatch) {
  NgramProposer proposer(2, 2);
  std::vector<int32_t> draft;
  std::vector<int32_t> tokens = {1, 2, 5, 1, 2, 6, 3, 2};
  proposer.propose({tokens, 1}, draft);
  EXPECT_TRUE(draft.empty());  // "3 2" never occurred; a 1-gram "2" would have, but the minimum is 2
  tokens = {1, 2, 5, 1, 2, 6, 1, 2};
  NgramProposer fresh(2, 2);
  fresh.propose({tokens, 1}, draft);
  EXPECT_EQ(draft, (std::vector<int32_t>{6}));  // the latest "1 2" was followed by 6
}

TEST(SpeculationConfig, ValidatesAndDescribes) {
  EXPECT_TRUE(SpeculationConfig{}.validate());
  EXPECT_FALSE((SpeculationConfig{.ngram_min = 3, .ngram_max = 2}.validate()));
  EXPECT_FALSE((SpeculationConfig{.max_draft = 0}.validate()));
  EXPECT_FALSE((SpeculationConfig{.max_draft = 4, .min_draft = 5}.validate()));
  EXPECT_EQ(parse_speculation_method("ngram").value(), SpeculationMethod::kNgram);
  EXPECT_FALSE(parse_speculation_method("eagle"));
  EXPECT_EQ(describe_speculation({}), "off");
  EXPECT_EQ(describe_speculation({.method = SpeculationMethod::kNgram, .is_default_on = false}), "ngram (2-4, up to 8 guesses, opt-in)");
  EXPECT_EQ(make_draft_proposer({}, nullptr), nullptr);
  // The draft model method: its file is required, and only with it.
  EXPECT_EQ(parse_speculation_method("draft").value(), SpeculationMethod::kDraft);
  EXPECT_FALSE((SpeculationConfig{.method = SpeculationMethod::kDraft}.validate()));
  EXPECT_FALSE((SpeculationConfig{.method = SpeculationMethod::kNgram, .draft_model = "small.gguf"}.validate()));
  EXPECT_TRUE((SpeculationConfig{.method = SpeculationMethod::kDraft, .draft_model = "small.gguf"}.validate()));
  EXPECT_EQ(describe_speculation({.method = SpeculationMethod::kDraft, .max_draft = 4, .draft_model = "/models/small.gguf"}),
            "draft model small.gguf (up to 4 guesses)");
  EXPECT_EQ(make_draft_proposer({.method = SpeculationMethod::kDraft, .draft_model = "small.gguf"}, nullptr), nullptr);
}

/// Requests decoding (prompt computed, one sampled token to feed back) with guesses of `draft_length`.
struct Decoding {
  Decoding(int num_requests, int64_t num_blocks, StepCostCoefficients cost, int64_t max_batch_tokens = 512)
      : kv(num_blocks, 4, /*prefix_caching=*/false),
        sched({.max_batch_tokens = max_batch_tokens, .max_running = 256, .step_cost_prior = cost}, kv),
        requests(static_cast<size_t>(num_requests)) {
    for (size_t i = 0; i < requests.size(); ++i) {
      SchedRequest& r = requests[i];
      r.id = i + 1;
      r.tokens = {1, 2, 3, 4, 5, 6, 7};
      r.num_prompt_tokens = 7;
      sched.add(&r);
    }
    while (std::any_of(requests.begin(), requests.end(), [](const SchedRequest& r) { return r.num_computed < 7; })) {
      sched.on_computed(sched.schedule());
    }
    for (SchedRequest& r : requests) r.tokens.push_back(100);  // the first sampled token
  }
  void guess(int64_t length, double acceptance, int64_t min_draft = 0) {
    for (SchedRequest& r : requests) {
      r.draft.resize(static_cast<size_t>(length));
      std::iota(r.draft.begin(), r.draft.end(), 200);
      r.draft_acceptance = acceptance;
      r.min_draft = min_draft;
    }
  }
  static int64_t guesses(const SchedulerOutput& out) {
    int64_t n = 0;
    for (const ScheduledChunk& c : out.chunks) n += c.num_draft;
    return n;
  }

  KvManager kv;
  Scheduler sched;
  std::vector<SchedRequest> requests;
};

// A memory-bound step (the fixed cost dominates): one stream takes several likely guesses, each worth
// its acceptance^depth; a compute-bound one (64 streams, each token costing its share) takes none.
TEST(SchedulerSpeculation, GuessesWhereTheyPayAndNotWhereTheStepIsComputeBound) {
  const StepCostCoefficients cost{.fixed_s = 0.005, .per_token_s = 0.0005, .per_context_s = 0};
  {
    Decoding one(1, 64, cost);
    one.guess(8, 0.9);
    const SchedulerOutput out = one.sched.schedule();
    ASSERT_EQ(out.chunks.size(), 1u);
    // Expected tokens per second grow while 0.9^k / 0.5 ms beats (sum of 0.9^i) / (5 ms + k x 0.5 ms): all 8.
    EXPECT_EQ(out.chunks[0].num_draft, 8);
    EXPECT_EQ(out.chunks[0].num_tokens, 9);
    EXPECT_EQ(out.num_decode_tokens, 9);
    EXPECT_TRUE(out.chunks[0].samples);
  }
  {
    Decoding unlikely(1, 64, cost);
    unlikely.guess(8, 0.05);
    EXPECT_EQ(Decoding::guesses(unlikely.sched.schedule()), 0);  // 0.05 / 0.5 ms < 1 / 5.5 ms
  }
  {
    Decoding many(64, 1024, cost);
    many.guess(8, 0.5);
    EXPECT_EQ(Decoding::guesses(many.sched.schedule()), 0);  // 0.5 / 0.5 ms < 64 / 37 ms
  }
  {
    Decoding forced(4, 64, cost);
    forced.guess(8, 0.01, /*min_draft=*/3);
    const SchedulerOutput out = forced.sched.schedule();
    for (const ScheduledChunk& c : out.chunks) EXPECT_EQ(c.num_draft, 3);
  }
}

// After the step, a chunk with guesses counts its first token and the accepted guesses as computed.
TEST(SchedulerSpeculation, OnlyAcceptedGuessesCountAsComputed) {
  Decoding one(1, 64, {.fixed_s = 0.005, .per_token_s = 0.0005, .per_context_s = 0});
  one.guess(4, 0.9, 4);
  const SchedulerOutput out = one.sched.schedule();
  ASSERT_EQ(out.chunks[0].num_draft, 4);
  SchedRequest& r = one.requests[0];
  r.tokens.insert(r.tokens.end(), {200, 201});  // the engine appends the accepted guesses
  r.num_draft_accepted = 2;
  one.sched.on_computed(out);
  EXPECT_EQ(r.num_computed, 7 + 1 + 2);
  r.tokens.push_back(300);  // the model's own token after them
  EXPECT_EQ(r.remaining(), 1);
}

// Guesses never preempt: with no free block, a step verifies only what fits the request's blocks.
TEST(SchedulerSpeculation, GuessesNeverPreemptAndRespectTheBudget) {
  // 2 requests of 8 tokens hold 2 blocks of 4 each; 4 blocks in all leave none for guesses past a block.
  Decoding two(2, 4, {.fixed_s = 0.005, .per_token_s = 0.0005, .per_context_s = 0});
  two.guess(8, 0.99, 8);
  SchedulerOutput out = two.sched.schedule();
  EXPECT_EQ(out.num_preempted, 0);
  EXPECT_EQ(out.chunks.size(), 2u);
  for (const ScheduledChunk& c : out.chunks) EXPECT_EQ(c.num_draft, 0);  // each holds positions 0-7: a guess needs a block
  Decoding budget(1, 64, {.fixed_s = 0.005, .per_token_s = 0.0005, .per_context_s = 0}, /*max_batch_tokens=*/3);
  budget.guess(8, 0.99, 8);
  out = budget.sched.schedule();
  EXPECT_EQ(out.num_tokens, 3);
  EXPECT_EQ(out.chunks[0].num_draft, 2);
}

}  // namespace
}  // namespace tern::engine
