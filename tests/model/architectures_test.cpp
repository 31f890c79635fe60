// Every architecture's random-weight fixture (tools/make_random_models.py) through the serving engine
// with prefix caching on: a prompt sent twice is computed once and reused, and the reused request's
// logits and greedy tokens are those of the first, bit for bit (the cached K/V are the values the
// first request stored, and each row's arithmetic does not depend on what else is in the batch). A
// third request shares only the prompt's first blocks and must equal the same prompt run cold.
// (Their logits against llama.cpp: forward_golden_test.cpp; LoRA: lora_golden_test.cpp.)

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "engine_harness.h"
#include "model/model.h"
#include "test_support.h"

namespace tern::model {
namespace {

class Architecture : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::string path = testing::model_or_fixture_path(GetParam());
    ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: scripts/test.sh makes it (tools/make_random_models.py)";
    auto loaded = Model::load(path, *cpu_);
    ASSERT_TRUE(loaded) << loaded.error().message;
    model_ = std::move(*loaded);
  }
  /// `count` random token ids of the fixture's vocabulary (its special tokens excluded).
  std::vector<int32_t> random_tokens(std::mt19937& rng, size_t count) const {
    std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(model_->config().vocab_size - 1));
    std::vector<int32_t> tokens(count);
    for (int32_t& t : tokens) t = token(rng);
    return tokens;
  }
  std::unique_ptr<backend::Backend> cpu_ = backend::make_cpu_backend(2);
  std::unique_ptr<Model> model_;
};

TEST_P(Architecture, PrefixCacheReusesTheSharedPromptAndChangesNothing) {
  std::mt19937 rng(7);
  const std::vector<int32_t> prompt = random_tokens(rng, 100);
  std::vector<int32_t> branch(prompt.begin(), prompt.begin() + 70);
  for (int32_t t : random_tokens(rng, 20)) branch.push_back(t);

  testing::EngineHarness cold(*model_, 64, /*keep_logits=*/true, /*prefix_caching=*/false);
  const testing::EngineOutput branch_cold = cold.run(branch, 8);
  testing::EngineHarness engine(*model_, 64, /*keep_logits=*/true, /*prefix_caching=*/true);
  const testing::EngineOutput first = engine.run(prompt, 8);
  const testing::EngineOutput again = engine.run(prompt, 8);
  const testing::EngineOutput shared = engine.run(branch, 8);
  for (const auto* out : {&first, &again, &shared, &branch_cold}) ASSERT_TRUE(out->error.empty()) << out->error;

  EXPECT_EQ(first.usage.cached_tokens, 0);
  EXPECT_GE(again.usage.cached_tokens, 64) << "the repeated prompt was not served from the cache";
  EXPECT_GE(shared.usage.cached_tokens, 48) << "the shared 70-token prefix was not served from the cache";
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_EQ(again.logit_rows, first.logit_rows);
  EXPECT_EQ(shared.tokens, branch_cold.tokens);
  EXPECT_EQ(shared.logit_rows, branch_cold.logit_rows);
}

// Batch invariance (engine_batch_test.cpp's property) on every architecture, mixtures included: a
// decode step's experts take the one-row path alone and the gathered-rows path beside other requests,
// and both must give the same bits.
TEST_P(Architecture, GreedyOutputAloneEqualsInsideABatch) {
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < 6; ++i) prompts.push_back(random_tokens(rng, 10 + 13 * i));
  testing::EngineHarness engine(*model_, 128, /*keep_logits=*/false, /*prefix_caching=*/false, /*max_batch_tokens=*/24);
  std::vector<std::vector<int32_t>> alone;
  for (const auto& prompt : prompts) alone.push_back(engine.run(prompt, 12).tokens);
  std::vector<uint64_t> ids;
  for (const auto& prompt : prompts) ids.push_back(engine.submit(prompt, 12));
  for (size_t i = 0; i < ids.size(); ++i) {
    const testing::EngineOutput together = engine.wait(ids[i]);
    ASSERT_TRUE(together.error.empty()) << together.error;
    EXPECT_EQ(together.tokens, alone[i]) << "request " << i << " differs inside the batch";
  }
}

INSTANTIATE_TEST_SUITE_P(RandomFixtures, Architecture,
                         ::testing::Values("llama3-random", "mixtral-random", "qwen3-random", "qwen3moe-random", "qwen2moe-random",
                                           "olmoe-random", "phi3-random", "phi35-random", "gemma2-random", "qwen3-yarn-random"),
                         [](const auto& info) { return testing::param_name(info.param); });

}  // namespace
}  // namespace tern::model
