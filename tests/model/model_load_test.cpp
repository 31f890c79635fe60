// Loading checks on small crafted models: a clear error for an unsupported architecture, a missing or
// misshapen tensor, and a prompt longer than the context; and a forward pass that runs on a valid one.

#include <unistd.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/engine.h"
#include "engine/sampling/sampler.h"
#include "model/forward_once.h"
#include "model/tiny_model.h"
#include "model/model.h"
#include "model/blocks.h"
#include "model/weights.h"

namespace tern::model {
namespace {

constexpr int kEmbd = testing::kTinyEmbd, kVocab = testing::kTinyVocab;
using testing::forward_prompt;
using testing::write_tiny_llama;
backend::Backend& cpu() { return testing::test_cpu_backend(); }

TEST(ModelLoad, TinyLlamaRunsAndSamples) {
  const std::string path = write_tiny_llama("llama");
  auto model = Model::load(path, cpu());
  ASSERT_TRUE(model) << model.error().message;
  const int32_t prompt[] = {0, 2, 3, 4};
  auto logits = forward_prompt(**model, prompt);
  ASSERT_TRUE(logits) << logits.error().message;
  ASSERT_EQ(logits->size(), static_cast<size_t>(kVocab));
  std::vector<float> row(logits->begin(), logits->end());
  engine::Sampler sampler({.temperature = 0.7f, .seed = 1});
  const int32_t token = sampler.sample(row, prompt);
  EXPECT_GE(token, 0);
  EXPECT_LT(token, kVocab);
  std::filesystem::remove(path);
}

TEST(ModelLoad, UnknownArchitectureIsAClearError) {
  const std::string path = write_tiny_llama("mamba");
  auto model = Model::load(path, cpu());
  ASSERT_FALSE(model);
  EXPECT_NE(model.error().message.find("architecture 'mamba' is not supported"), std::string::npos) << model.error().message;
  std::filesystem::remove(path);
}

TEST(ModelLoad, MissingTensorIsNamed) {
  const std::string path = write_tiny_llama("llama", [](std::string& name, auto&) { return name != "blk.0.ffn_up.weight"; });
  auto model = Model::load(path, cpu());
  ASSERT_FALSE(model);
  EXPECT_NE(model.error().message.find("missing tensor 'blk.0.ffn_up.weight'"), std::string::npos) << model.error().message;
  std::filesystem::remove(path);
}

// What tern does not implement is refused, named, rather than ignored (and tern inspect says the same
// without loading the weights).
void expect_refused(const std::function<void(testing::GgufBuilder&)>& extend, const std::string& expected) {
  const std::string path = write_tiny_llama("llama", {}, {}, extend);
  auto model = Model::load(path, cpu());
  ASSERT_FALSE(model);
  EXPECT_NE(model.error().message.find(expected), std::string::npos) << model.error().message;
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file) << file.error().message;
  auto runnable = check_runnable(*file);
  ASSERT_FALSE(runnable);
  EXPECT_NE(runnable.error().message.find(expected), std::string::npos) << runnable.error().message;
  std::filesystem::remove(path);
}

TEST(ModelLoad, UnimplementedMetadataKeyIsNamed) {
  expect_refused([](testing::GgufBuilder& b) { b.kv_u32("llama.attention.sliding_window", 16); },
                 "metadata key 'llama.attention.sliding_window' is not one tern implements for llama");
  expect_refused([](testing::GgufBuilder& b) { b.kv_f32("llama.attn_logit_softcapping", 30.0f); },
                 "metadata key 'llama.attn_logit_softcapping' is not one tern implements for llama");
}

TEST(ModelLoad, UnimplementedRopeScalingIsNamed) {
  expect_refused([](testing::GgufBuilder& b) { b.kv_string("llama.rope.scaling.type", "dynamic"); },
                 "llama.rope.scaling.type 'dynamic' is not implemented");
  // YaRN runs, but not with the variants' keys that llama.cpp reads only for other families.
  expect_refused(
      [](testing::GgufBuilder& b) {
        b.kv_string("llama.rope.scaling.type", "yarn");
        b.kv_f32("llama.rope.scaling.yarn_log_multiplier", 0.1f);
      },
      "metadata key 'llama.rope.scaling.yarn_log_multiplier' is not one tern implements for llama");
  // Without YaRN its keys are not explained by anything.
  expect_refused([](testing::GgufBuilder& b) { b.kv_u32("llama.rope.scaling.original_context_length", 16); },
                 "metadata key 'llama.rope.scaling.original_context_length' is not one tern implements for llama");
}

// YaRN's table against the formula as Hugging Face transformers writes it (_compute_yarn_parameters:
// inverse frequencies mixed between the interpolated and extrapolated ones by a linear ramp over the
// correction range, cos and sin times 0.1 ln(factor) + 1), in double with exact powers. The table
// follows llama.cpp's float recurrence, so angles drift by a few 1e-6 relative: 4e-3 absolute at
// position 600 bounds that, while a wrong ramp (direction or range) or factor is off by far more.
TEST(ModelLoad, YarnRopeTableMatchesTheReferenceFormula) {
  const std::string path = write_tiny_llama("llama", {}, {}, [](testing::GgufBuilder& b) {
    b.kv_string("llama.rope.scaling.type", "yarn");
    b.kv_f32("llama.rope.scaling.factor", 4.0f);
    b.kv_u32("llama.rope.scaling.original_context_length", 256);
  });
  auto model = Model::load(path, cpu());
  ASSERT_TRUE(model) << model.error().message;
  std::filesystem::remove(path);
  ModelConfig c = (*model)->config();
  EXPECT_EQ(c.yarn_original_context, 256);
  c.rotary_dims = 64, c.rope_base = 1e6f;  // a Qwen-like head, so the ramp covers several pairs
  const backend::RopeSpec spec = rope_spec(c, ModelWeights{});
  const std::vector<int32_t> positions = {0, 1, 5, 63, 255, 256, 400, 600};
  backend::RopeTable table;
  cpu().rope_table(positions, spec, table);

  const double dim = 64, base = 1e6, factor = 4, original = 256;
  const auto correction_dim = [&](double rotations) { return dim * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(base)); };
  const double low = std::max(0.0, std::floor(correction_dim(32))), high = std::min(dim - 1, std::ceil(correction_dim(1)));
  ASSERT_LT(low, high);
  const double attention_factor = 0.1 * std::log(factor) + 1;
  for (size_t i = 0; i < positions.size(); ++i) {
    for (int64_t d = 0; d < 32; ++d) {
      const double extrapolated = std::pow(base, -2.0 * static_cast<double>(d) / dim), interpolated = extrapolated / factor;
      const double keep = 1 - std::clamp((static_cast<double>(d) - low) / (high - low), 0.0, 1.0);
      const double angle = positions[i] * (interpolated * (1 - keep) + extrapolated * keep);
      ASSERT_NEAR(table.cos[i * 32 + d], std::cos(angle) * attention_factor, 4e-3) << "position " << positions[i] << ", pair " << d;
      ASSERT_NEAR(table.sin[i * 32 + d], std::sin(angle) * attention_factor, 4e-3) << "position " << positions[i] << ", pair " << d;
    }
  }
}

TEST(ModelLoad, UnimplementedExpertGatingIsNamed) {
  expect_refused([](testing::GgufBuilder& b) { b.kv_u32("llama.expert_gating_func", 2); },
                 "llama.expert_gating_func = 2 is not implemented");
  expect_refused([](testing::GgufBuilder& b) { b.kv_string("llama.rope.scaling.type", "longrope"); },
                 "llama.rope.scaling.type 'longrope' is not implemented");
}

TEST(ModelLoad, UnusedTensorIsNamed) {
  expect_refused([](testing::GgufBuilder& b) { b.tensor("rope_factors_long.weight", {4}, 0, testing::f32_bytes({1, 2, 3, 4})); },
                 "tensor 'rope_factors_long.weight' is not one tern's llama uses");
}

TEST(ModelLoad, RunnableFileIsSaidRunnable) {
  const std::string path = write_tiny_llama("llama");
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_TRUE(check_runnable(*file));
  std::filesystem::remove(path);
}

TEST(ModelLoad, MisshapenTensorIsNamed) {
  const std::string path = write_tiny_llama("llama", [](std::string& name, std::vector<uint64_t>& shape) {
    if (name == "blk.0.attn_k.weight") shape = {kEmbd, kEmbd};
    return true;
  });
  auto model = Model::load(path, cpu());
  ASSERT_FALSE(model);
  EXPECT_NE(model.error().message.find("tensor 'blk.0.attn_k.weight' has shape [32, 32] but the config implies [32, 16]"),
            std::string::npos)
      << model.error().message;
  std::filesystem::remove(path);
}

TEST(ModelLoad, PromptLongerThanTheContextIsAClearError) {
  const std::string path = write_tiny_llama("llama");
  auto model = Model::load(path, cpu());
  ASSERT_TRUE(model);
  engine::EngineConfig config;
  config.model_name = "tiny";
  config.num_kv_blocks = 1;
  config.max_model_len = 16;
  engine::Engine engine(**model, config);
  engine::GenerationRequest request;
  request.prompt.assign(17, 2);
  request.max_tokens = 1;
  auto id = engine.submit(std::move(request), [](engine::GenerationEvent&&) {});
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().kind, engine::SubmitError::kTooLong);
  EXPECT_NE(id.error().message.find("maximum context length is 16 tokens; the request needs 18"), std::string::npos)
      << id.error().message;
  std::filesystem::remove(path);
}

TEST(ModelLoad, BatchWithBadTokenIsRejected) {
  const std::string path = write_tiny_llama("llama");
  auto model = Model::load(path, cpu());
  ASSERT_TRUE(model);
  const int32_t prompt[] = {0, 99};
  auto logits = forward_prompt(**model, prompt);
  ASSERT_FALSE(logits);
  EXPECT_NE(logits.error().message.find("token id 99 is outside the vocabulary"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(Sampler, SameSeedSameTokensAndParameterChecks) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = static_cast<float>(i % 7) * 0.3f;
  const engine::SamplingParams params{.temperature = 1.0f, .top_k = 20, .top_p = 0.9f, .min_p = 0.01f, .seed = 42};
  engine::Sampler a(params), b(params);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> x = logits, y = logits;
    EXPECT_EQ(a.sample(x, {}), b.sample(y, {}));
  }
  std::vector<float> greedy = logits;
  EXPECT_EQ(engine::Sampler({.temperature = 0.0f}).sample(greedy, {}), 6);  // first of the maxima
  EXPECT_FALSE((engine::SamplingParams{.top_p = 0.0f}).validate());
  EXPECT_FALSE((engine::SamplingParams{.temperature = -1.0f}).validate());
  EXPECT_TRUE((engine::SamplingParams{}).validate());
  // A repetition penalty steers away from a token seen before.
  std::vector<float> two = {1.0f, 0.9f};
  const int32_t seen[] = {0};
  EXPECT_EQ(engine::Sampler({.temperature = 0.0f, .repetition_penalty = 2.0f}).sample(two, seen), 1);
}

}  // namespace
}  // namespace tern::model
