#pragma once
// How big the KV cache is, decided in one place for every command that runs the engine: `tern serve`
// sizes it by memory (a budget in bytes), `tern run` / `tern chat` by one full context.

#include <cstdint>
#include <optional>

#include "model/model.h"
#include "util/result.h"

namespace tern::engine {

struct KvSizing {
  int64_t max_model_len = 0;  ///< prompt + output tokens of one request
  int64_t num_blocks = 0;
  int64_t block_bytes = 0;    ///< one block over all layers
  int64_t bytes() const { return num_blocks * block_bytes; }
};

struct KvSizingRequest {
  int64_t context = 0;                 ///< 0: the model's, at most `default_context_cap`
  int64_t default_context_cap = 8192;
  std::optional<int64_t> memory_bytes; ///< the budget; nullopt: exactly one full context (one-user commands)
  int64_t block_size = 16;
};

/// The context (never past the model's) and the block count. An error when the budget cannot hold
/// one full context, naming what it holds and what it would need.
Result<KvSizing> size_kv_cache(const model::Model& model, const KvSizingRequest& request);

/// The default budget of a server: a quarter of the memory available now, at most 4 GiB (pages are
/// touched only as blocks fill).
int64_t default_kv_memory_bytes();

}  // namespace tern::engine
