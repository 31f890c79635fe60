#pragma once
// Turns a row of logits into the next token: penalties, temperature, then top-k / top-p / min-p
// truncation, then a draw. Temperature 0 is greedy.
//
// The draw for a token is keyed by (seed, its position in the sequence), not taken from a stream of
// draws: the same seed gives the same tokens however the engine scheduled the request - in particular
// with speculative decoding, where a position's token is decided by verifying a guess in one step or by
// sampling it in another, depending on the step-time model's judgement of the moment.

#include <cstdint>
#include <span>
#include <vector>

#include "util/result.h"

namespace tern::engine {

struct SamplingParams {
  float temperature = 1.0f;         ///< 0: greedy
  int32_t top_k = 0;                ///< 0: off
  float top_p = 1.0f;               ///< 1: off
  float min_p = 0.0f;               ///< 0: off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  ///< 1: off; divides positive logits (multiplies negative) of seen tokens
  float presence_penalty = 0.0f;    ///< subtracted once from every token seen
  float frequency_penalty = 0.0f;   ///< subtracted per occurrence
  uint64_t seed = 0;

  /// An error naming the first out-of-range parameter.
  Result<void> validate() const;
};

/// The greedy choice: the first id of the largest logit (ties go to the lowest id, as in llama.cpp and
/// std::max_element), in two passes that run several comparisons at once instead of one chain of
/// dependent compare-and-moves (a 262k-entry vocabulary took 0.3 ms that way, 3 % of a Gemma 3 step).
int32_t greedy_token(std::span<const float> logits);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params) {}

  /// Picks a token; `logits` is modified (penalties, then the sampling weights are written over it). `history` holds the tokens before
  /// it (prompt and output so far): the penalties look at them, and their count is the token's position.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);

  /// Speculative decoding's check of a guessed token (engine/spec/proposer.h): the token sample() picks
  /// from the same logits and history, and whether it is the guess. This is rejection sampling against a
  /// proposal certain of its guess - the guess is accepted with exactly the probability p(guess) the
  /// sampler gives it, and otherwise the token is distributed as p restricted to the rest, renormalised -
  /// coupled to sample()'s own draw, so a request gets the same tokens with speculation as without.
  struct Verdict {
    int32_t token = 0;
    bool is_guess = false;
  };
  Verdict verify(std::span<float> logits, std::span<const int32_t> history, int32_t guess);

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> history);
  /// Turns penalised logits into the kept tokens' weights, in place: e^((logit - max) / T) for the
  /// whole vocabulary at once (a vectorised kernel; the largest is 1), then min-p, top-k and top-p
  /// zero the tokens they cut. Returns the kept weights' total.
  double weigh_and_truncate(std::span<float> weights);
  /// Keeps the heaviest weights (ties to the lower id) up to and including the one with which
  /// `enough(kept count, kept total)` first holds, zeroing the rest; returns the kept total. No sort of
  /// the vocabulary: a histogram over the weights' float bits (1/16 of an octave per bucket) finds the
  /// bucket where the cut falls, and only that bucket's tokens are ordered. kBySum: `enough` reads the
  /// total (top-p), else only the count (top-k), and the histogram keeps no sums.
  template <bool kBySum, typename Enough>
  double keep_heaviest(std::span<float> weights, Enough enough);
  /// Restores boundary_'s tokens (set aside at zero) heaviest first, ties to the lower id, up to and
  /// including the one with which `enough(count, sum)` holds (counting from what is already kept);
  /// returns the kept total.
  template <typename Enough>
  double take_back_in_order(std::span<float> weights, uint64_t count, double sum, Enough enough);
  /// A draw among the nonzero weights (in id order) totalling `total`, with `u` uniform in [0, 1).
  static int32_t draw(std::span<const float> weights, double total, double u);
  /// The uniform number of the token at `position`: a hash of (seed, position).
  double uniform_at(size_t position) const;

  SamplingParams params_;
  std::vector<int32_t> counts_;
  std::vector<uint32_t> bucket_counts_;
  std::vector<double> bucket_sums_;
  std::vector<std::pair<float, int32_t>> boundary_;  ///< the cut bucket's tokens, ordered
  static constexpr size_t kMaxListed = 4096;
  std::vector<int32_t> kept_;  ///< after a cut, the kept tokens if at most kMaxListed (top-p after top-k orders only them)
};

}  // namespace tern::engine
