// Loading checks on small crafted models: a clear error for an unsupported architecture, a missing or
// misshapen tensor, and a prompt longer than the context; and a forward pass that runs on a valid one.

#include <unistd.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/engine.h"
#include "engine/sampling/sampler.h"
#include "model/forward_once.h"
#include "model/tiny_model.h"
#include "model/model.h"

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
