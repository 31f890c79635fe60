// One generation path, batch invariance: a request's greedy output through the engine is the same
// whether it runs alone or inside a batch of 16 where its prompt is prefilled beside other requests'
// decodes and prompt chunks. The kernels compute each output row with the same arithmetic whatever
// else is in the batch (rows in separate lanes, per-row reductions in a fixed order), and attention
// reads K/V back from the cache in the same F16 form however the prompt was chunked, so the
// comparison is exact: any difference is a bug, not rounding.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine_harness.h"
#include "model/model.h"
#include "test_support.h"

namespace tern::model {
namespace {

TEST(EngineBatch, GreedyOutputAloneEqualsInsideAMixedBatchOf16) {
  TERN_REQUIRE_MODEL(path, "smollm2-135m");
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto loaded = Model::load(path, *cpu);
  ASSERT_TRUE(loaded) << loaded.error().message;
  Model& model = **loaded;
  const auto encode = [&](const std::string& text) { return model.tokenizer().encode(text, {.add_special = true}); };
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back(encode("Request " + std::to_string(i) + ": write a short note about the number " + std::to_string(i * 7 + 3) +
                             (i % 3 == 0 ? " and why it matters to the history of mathematics, in plain words." : ".")));
  }
  const int64_t kTokens = 24;
  // A small step budget so that prompts are split into chunks and steps mix prefill with decodes.
  testing::EngineHarness engine(model, 256, /*keep_logits=*/false, /*prefix_caching=*/false, /*max_batch_tokens=*/40);
  std::vector<std::vector<int32_t>> alone;
  for (const auto& prompt : prompts) alone.push_back(engine.run(prompt, kTokens).tokens);

  // The batch: 8 requests start and begin decoding; then the other 8 arrive while those decode.
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < 8; ++i) ids.push_back(engine.submit(prompts[i], kTokens));
  engine.wait_for_tokens(ids.back(), 2);
  for (size_t i = 8; i < 16; ++i) ids.push_back(engine.submit(prompts[i], kTokens));
  for (size_t i = 0; i < ids.size(); ++i) {
    const testing::EngineOutput together = engine.wait(ids[i]);
    ASSERT_TRUE(together.error.empty()) << together.error;
    EXPECT_EQ(together.tokens, alone[i]) << "request " << i << " differs inside the batch";
    EXPECT_EQ(together.tokens.size(), static_cast<size_t>(kTokens));
  }
}

}  // namespace
}  // namespace tern::model
