// A traced request's timeline inside the engine (GenerationRequest::trace): its admission with what the
// prefix cache held, each prompt chunk with its step, the first token, and a preemption with the
// recompute after it — on the real default model, so that chunking and preemption happen as in serving.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine_harness.h"
#include "model/model.h"
#include "test_support.h"

namespace tern::model {
namespace {

using Kind = engine::EngineTraceEvent::Kind;

std::vector<engine::EngineTraceEvent> of_kind(const std::vector<engine::EngineTraceEvent>& trace, Kind kind) {
  std::vector<engine::EngineTraceEvent> out;
  for (const auto& e : trace) {
    if (e.kind == kind) out.push_back(e);
  }
  return out;
}

engine::GenerationRequest traced(std::vector<int32_t> prompt, int64_t max_tokens) {
  engine::GenerationRequest request;
  request.prompt = std::move(prompt);
  request.sampling.temperature = 0;
  request.max_tokens = max_tokens;
  request.ignore_eos = true;
  request.top_logprobs = 0;
  request.trace = true;
  return request;
}

class EngineTrace : public ::testing::Test {
 protected:
  void SetUp() override {
    TERN_REQUIRE_MODEL(path, "smollm2-135m");
    cpu_ = backend::make_cpu_backend(2);
    auto loaded = Model::load(path, *cpu_);
    ASSERT_TRUE(loaded) << loaded.error().message;
    model_ = std::move(*loaded);
  }
  std::vector<int32_t> prompt(int copies) {
    std::string text;
    for (int i = 0; i < copies; ++i) text += "The quick brown fox " + std::to_string(i) + " jumps over the lazy dog. ";
    return model_->tokenizer().encode(text, {.add_special = true});
  }
  std::unique_ptr<backend::Backend> cpu_;
  std::unique_ptr<Model> model_;
};

TEST_F(EngineTrace, PromptChunksStepsCacheLookupAndFirstToken) {
  testing::EngineHarness engine(*model_, 64, /*keep_logits=*/false, /*prefix_caching=*/true, /*max_batch_tokens=*/40);
  const std::vector<int32_t> tokens = prompt(10);
  ASSERT_GT(tokens.size(), 100u);
  const testing::EngineOutput first = engine.wait(engine.submit(traced(tokens, 4)));
  ASSERT_TRUE(first.error.empty()) << first.error;

  const auto scheduled = of_kind(first.trace, Kind::kScheduled);
  ASSERT_EQ(scheduled.size(), 1u);
  EXPECT_EQ(scheduled[0].num_tokens, 0) << "nothing was cached yet";
  const auto chunks = of_kind(first.trace, Kind::kPrefillChunk);
  ASSERT_GE(chunks.size(), 3u) << "a prompt of " << tokens.size() << " tokens in steps of 40";
  int64_t covered = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].start, covered) << "chunk " << i << " starts where the previous one ended";
    EXPECT_LE(chunks[i].num_tokens, 40);
    EXPECT_GT(chunks[i].duration_s, 0);
    if (i > 0) {
      EXPECT_EQ(chunks[i].step, chunks[i - 1].step + 1) << "alone, its chunks are consecutive steps";
    }
    covered += chunks[i].num_tokens;
  }
  EXPECT_EQ(covered, static_cast<int64_t>(tokens.size()));
  const auto first_token = of_kind(first.trace, Kind::kFirstToken);
  ASSERT_EQ(first_token.size(), 1u);
  EXPECT_EQ(first_token[0].step, chunks.back().step) << "the last prompt chunk samples the first token";
  EXPECT_TRUE(of_kind(first.trace, Kind::kPreempted).empty());

  // The same prompt again: the lookup finds its full blocks in RAM, and the prompt chunks start after them.
  const testing::EngineOutput again = engine.wait(engine.submit(traced(tokens, 4)));
  const auto hit = of_kind(again.trace, Kind::kScheduled);
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0].num_tokens, again.usage.cached_tokens);
  EXPECT_GT(hit[0].num_tokens, 80);
  EXPECT_EQ(hit[0].disk_tokens, 0);
  EXPECT_EQ(hit[0].pinned_tokens, 0);
  const auto rest = of_kind(again.trace, Kind::kPrefillChunk);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest[0].start, hit[0].num_tokens);

  // Untraced requests carry no timeline.
  EXPECT_TRUE(engine.run(tokens, 2).trace.empty());
}

TEST_F(EngineTrace, PreemptionAndRecomputeAreRecorded) {
  // 8 blocks of 16 positions; two requests of ~20 prompt tokens generating 50 each need 5 blocks
  // apiece: the later one is preempted when blocks run out, and recomputed after the first finishes.
  testing::EngineHarness engine(*model_, 8, /*keep_logits=*/false, /*prefix_caching=*/false);
  const std::vector<int32_t> tokens = prompt(2);
  ASSERT_LT(tokens.size(), 30u);
  const uint64_t a = engine.submit(traced(tokens, 50));
  const uint64_t b = engine.submit(traced(tokens, 50));
  const testing::EngineOutput out_a = engine.wait(a);
  const testing::EngineOutput out_b = engine.wait(b);
  ASSERT_TRUE(out_a.error.empty() && out_b.error.empty());
  const auto preempted = of_kind(out_b.trace, Kind::kPreempted);
  ASSERT_FALSE(preempted.empty()) << "the later request gives its blocks up";
  EXPECT_TRUE(of_kind(out_a.trace, Kind::kPreempted).empty()) << "the older request keeps its progress";
  EXPECT_EQ(of_kind(out_b.trace, Kind::kScheduled).size(), preempted.size() + 1) << "admitted again after each preemption";
  const auto chunks = of_kind(out_b.trace, Kind::kPrefillChunk);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_GT(chunks.back().step, preempted.back().step - 1) << "the recompute comes after the preemption";
  EXPECT_GT(chunks.back().num_tokens, static_cast<int64_t>(tokens.size())) << "the recompute covers the tokens generated before it";
}

}  // namespace
}  // namespace tern::model
