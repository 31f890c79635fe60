#pragma once
// A live model of how long an engine step takes, learned from the steps the engine measured, so the
// scheduler can size each step's prompt chunk to keep running streams under an inter-token target
// (stall-free batching, as in Sarathi-Serve).
//
//   step seconds ~ fixed + per_token * tokens + per_context * context_pairs + per_logit_row * logit_rows
//
// `tokens` is how many tokens the step computes (matmul work, linear in tokens); `context_pairs` counts
// every (query token, key position) pair attention visits: a chunk of n tokens starting at position s
// attends over n*s + n*(n+1)/2 pairs, so a decode at depth 4,000 costs more than one at depth 10;
// `logit_rows` counts the rows whose logits the step computes and samples (the output projection over
// the whole vocabulary, then the sampler): one per decode and per last prompt chunk, and one per guess
// speculative decoding verifies - with a 262k vocabulary, a row's logits cost more than the rest of a
// small model's token.
//
// Fitting: ridge-regularised least squares over the last `window` steps (4x4 normal equations, solved
// every step; cheap), pulled towards a prior so that the first steps, or a run of steps that all look
// alike (only decodes: tokens and pairs move together), give a sane answer instead of a singular one.
// Coefficients are kept non-negative: a step never gets cheaper by computing more.

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace tern::engine {

/// What one step computes, in the model's terms.
struct StepShape {
  double tokens = 0;
  double context_pairs = 0;
  double logit_rows = 0;

  /// Adds a chunk of `num_tokens` tokens at positions [start, start + num_tokens), `num_logit_rows` of
  /// them with logits.
  void add_chunk(int64_t start, int64_t num_tokens, int64_t num_logit_rows = 0);
};

/// The model's four terms. The defaults are the prior: about right for a ~100M-parameter model on
/// two cores, and replaced by measurement within a few dozen steps.
struct StepCostCoefficients {
  double fixed_s = 0.002;       ///< per step: thread fork/joins, sampling, bookkeeping
  double per_token_s = 0.001;   ///< per token computed: the weight matmuls
  double per_context_s = 1e-6;  ///< per attention (query, key) pair, all layers
  double per_logit_row_s = 0.0002;  ///< per row of logits: the output projection and sampling
};

class StepCostModel {
 public:
  using Coefficients = StepCostCoefficients;

  explicit StepCostModel(Coefficients prior = Coefficients{}, size_t window = 256);

  /// Predicted seconds of a step of this shape.
  double predict(const StepShape& shape) const;
  /// Feeds one measured step and refits.
  void observe(const StepShape& shape, double seconds);

  const Coefficients& coefficients() const { return fitted_; }
  int64_t num_observed() const { return num_observed_; }

 private:
  void refit();

  struct Sample {
    StepShape shape;
    double seconds;
  };
  Coefficients prior_;
  Coefficients fitted_;
  size_t window_;
  std::deque<Sample> samples_;
  int64_t num_observed_ = 0;
};

}  // namespace tern::engine
