#include "engine/spec/ngram_proposer.h"

#include <algorithm>

namespace tern::engine {
namespace {

/// Hash of tokens[end - n, end): a position-dependent mix, so reordered tokens differ.
uint64_t hash_ngram(std::span<const int32_t> tokens, int64_t end, int32_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ static_cast<uint64_t>(n);
  for (int64_t i = end - n; i < end; ++i) {
    h ^= static_cast<uint32_t>(tokens[static_cast<size_t>(i)]);
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
  }
  return h;
}

}  // namespace

NgramProposer::NgramProposer(int32_t ngram_min, int32_t ngram_max)
    : ngram_min_(ngram_min), ngram_max_(ngram_max), latest_(static_cast<size_t>(ngram_max - ngram_min + 1)) {}

void NgramProposer::index_up_to(std::span<const int32_t> tokens, int64_t end) {
  for (; indexed_ < end; ++indexed_) {
    for (int32_t n = ngram_min_; n <= ngram_max_ && n <= indexed_; ++n) {
      latest_[static_cast<size_t>(n - ngram_min_)][hash_ngram(tokens, indexed_, n)] = indexed_;
    }
  }
}

void NgramProposer::propose(const DraftQuery& query, std::vector<int32_t>& draft) {
  draft.clear();
  const std::span<const int32_t> tokens = query.tokens;
  const int64_t max_tokens = query.max_tokens;
  const auto length = static_cast<int64_t>(tokens.size());
  // Index every n-gram that has a next token (ends before the last position); the suffix itself is the
  // query, so it is not in the index yet and never matches itself.
  index_up_to(tokens, length);
  if (max_tokens <= 0) return;
  for (int32_t n = std::min<int64_t>(ngram_max_, length - 1); n >= ngram_min_; --n) {
    const auto& index = latest_[static_cast<size_t>(n - ngram_min_)];
    const auto found = index.find(hash_ngram(tokens, length, n));
    if (found == index.end()) continue;
    const int64_t after = found->second;
    // A hash collision is possible: the tokens must match.
    if (!std::equal(tokens.begin() + (after - n), tokens.begin() + after, tokens.end() - n)) continue;
    const int64_t count = std::min(max_tokens, length - after);
    draft.assign(tokens.begin() + after, tokens.begin() + after + count);
    return;
  }
}

}  // namespace tern::engine
