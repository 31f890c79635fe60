#include "engine/sequence_runner.h"

namespace tern::engine {
namespace {
constexpr int64_t kBlockSize = 16;
}

SequenceRunner::SequenceRunner(model::Model& model, kernels::ThreadPool& pool, int64_t max_tokens, int64_t prefill_chunk)
    : model_(model),
      pool_(pool),
      max_tokens_(max_tokens),
      prefill_chunk_(prefill_chunk),
      cache_(model.config(), (max_tokens + kBlockSize - 1) / kBlockSize, kBlockSize) {}

void SequenceRunner::truncate(int64_t num_tokens) {
  if (num_tokens < static_cast<int64_t>(tokens_.size())) tokens_.resize(static_cast<size_t>(num_tokens));
}

Result<std::span<const float>> SequenceRunner::feed(std::span<const int32_t> tokens) {
  if (tokens.empty()) return fail("nothing to feed");
  const int64_t total = static_cast<int64_t>(tokens_.size() + tokens.size());
  if (total > max_tokens_) {
    return fail("the sequence would be {} tokens, more than the context of {} tokens", total, max_tokens_);
  }
  while (static_cast<int64_t>(block_table_.size()) * kBlockSize < total) {
    auto block = cache_.allocate();
    if (!block) return fail("KV cache full");
    block_table_.push_back(*block);
  }
  size_t done = 0;
  while (done < tokens.size()) {
    const size_t count = std::min<size_t>(static_cast<size_t>(prefill_chunk_), tokens.size() - done);
    batch_.clear();
    batch_.block_tables = {std::span<const int32_t>(block_table_)};
    for (size_t i = 0; i < count; ++i) {
      batch_.add(tokens[done + i], static_cast<int32_t>(tokens_.size() + i), 0, done + i + 1 == tokens.size());
    }
    auto ok = model_.forward(batch_, cache_, pool_, logits_);
    if (!ok) return std::unexpected(ok.error());
    tokens_.insert(tokens_.end(), tokens.begin() + static_cast<long>(done), tokens.begin() + static_cast<long>(done + count));
    done += count;
  }
  return std::span<const float>(logits_);
}

}  // namespace tern::engine
