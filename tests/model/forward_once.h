#pragma once
// One forward pass of a prompt outside the engine, for model tests: the prompt as a single sequence at
// positions 0..n-1 (at most 64 tokens), every token with `adapter` (null: the base model); the logits
// of its last token. A shared CPU backend for the tests that need one.

#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <vector>

#include "model/model.h"

namespace tern::testing {

inline backend::Backend& test_cpu_backend() {
  static const std::unique_ptr<backend::Backend> backend = backend::make_cpu_backend(2);
  return *backend;
}

inline Result<std::vector<float>> forward_prompt(model::Model& model, std::span<const int32_t> prompt,
                                                 const model::LoraAdapter* adapter = nullptr) {
  const std::unique_ptr<backend::KvCache> cache = model.make_kv_cache(4, 16);
  const std::vector<int32_t> block_table = {0, 1, 2, 3};
  model::Batch batch;
  batch.block_tables = {std::span<const int32_t>(block_table)};
  for (size_t i = 0; i < prompt.size(); ++i) batch.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size(), adapter);
  std::vector<float> logits;
  auto ok = model.forward(batch, *cache, logits);
  if (!ok) return std::unexpected(ok.error());
  return logits;
}

/// forward_prompt's logits, a test failure when it fails.
inline std::vector<float> last_logits(model::Model& model, std::span<const int32_t> prompt, const model::LoraAdapter* adapter) {
  auto logits = forward_prompt(model, prompt, adapter);
  EXPECT_TRUE(logits) << logits.error().message;
  return logits ? *logits : std::vector<float>();
}

}  // namespace tern::testing
