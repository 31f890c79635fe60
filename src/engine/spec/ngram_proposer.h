#pragma once
// Prompt lookup decoding: when the last n tokens of a request occurred before (in its prompt or its
// output), guess that what followed them then follows them now. Input-grounded work - editing a file,
// quoting a document, answering from retrieved text - repeats long spans of its prompt, and each
// repeated span is verified several tokens per step.
//
// The longest suffix from ngram_max down to ngram_min that has an earlier occurrence wins, and of its
// occurrences the latest (the most recent context is the best predictor of the next). Lookups are
// O(1): an index from each n-gram's hash to the position after its latest occurrence, extended with
// each call's new tokens, so a step costs the same at position 100 and 100,000.

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/spec/proposer.h"

namespace tern::engine {

class NgramProposer final : public DraftProposer {
 public:
  NgramProposer(int32_t ngram_min, int32_t ngram_max);
  void propose(const DraftQuery& query, std::vector<int32_t>& draft) override;

 private:
  /// Adds the n-grams ending at positions [indexed_, end) for every n (each has a next token).
  void index_up_to(std::span<const int32_t> tokens, int64_t end);

  int32_t ngram_min_, ngram_max_;
  int64_t indexed_ = 0;  // n-grams ending before this position are in the index
  /// Per n (index n - ngram_min_): n-gram hash -> position just after its latest indexed occurrence.
  std::vector<std::unordered_map<uint64_t, int64_t>> latest_;
};

}  // namespace tern::engine
