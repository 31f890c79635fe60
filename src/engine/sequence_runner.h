#pragma once
// Runs one sequence through a model: the building block of `tern run` and `tern chat` until the
// serving engine's scheduler takes over. Keeps the sequence's KV blocks between calls, so a chat
// turn only computes the tokens that are new since the previous turn.

#include <memory>
#include <span>
#include <vector>

#include "engine/kv/kv_cache.h"
#include "kernels/cpu/thread_pool.h"
#include "model/model.h"

namespace tern::engine {

class SequenceRunner {
 public:
  /// `max_tokens`: the longest sequence this runner will hold (sizes the KV cache).
  SequenceRunner(model::Model& model, kernels::ThreadPool& pool, int64_t max_tokens, int64_t prefill_chunk = 512);

  /// Feeds tokens after the ones already in the cache and returns the logits of the last one.
  /// Tokens that repeat the cached prefix are skipped (their KV is reused). An error if the sequence
  /// would exceed max_tokens.
  Result<std::span<const float>> feed(std::span<const int32_t> tokens);

  /// Forgets the cache past `num_tokens` tokens (for a new turn that diverges from the last).
  void truncate(int64_t num_tokens);

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t max_tokens() const { return max_tokens_; }

 private:
  model::Model& model_;
  kernels::ThreadPool& pool_;
  int64_t max_tokens_;
  int64_t prefill_chunk_;
  KvCache cache_;
  std::vector<int32_t> block_table_;
  std::vector<int32_t> tokens_;  // tokens whose K/V are in the cache
  model::Batch batch_;
  std::vector<float> logits_;
};

}  // namespace tern::engine
