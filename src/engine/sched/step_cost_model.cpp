#include "engine/sched/step_cost_model.h"

#include <algorithm>
#include <cmath>

namespace tern::engine {
namespace {

// The regression runs on scaled features so the three columns have comparable magnitudes (a step
// has ~1-512 tokens and up to millions of context pairs); the ridge weight is in those units.
constexpr double kTokenScale = 100.0;
constexpr double kPairScale = 1e5;
constexpr double kRowScale = 100.0;
// How strongly the prior holds: worth about this many steps of data in each direction.
constexpr double kPriorWeight = 2.0;

constexpr int kTerms = 4;
using Vec = std::array<double, kTerms>;
using Mat = std::array<Vec, kTerms>;

Vec features(const StepShape& shape) {
  return {1.0, shape.tokens / kTokenScale, shape.context_pairs / kPairScale, shape.logit_rows / kRowScale};
}

/// Solves a x = b for a symmetric positive-definite a (Gaussian elimination with pivoting).
bool solve(Mat a, Vec b, Vec& x) {
  for (int col = 0; col < kTerms; ++col) {
    int pivot = col;
    for (int row = col + 1; row < kTerms; ++row) {
      if (std::abs(a[row][col]) > std::abs(a[pivot][col])) pivot = row;
    }
    if (std::abs(a[pivot][col]) < 1e-300) return false;
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (int row = col + 1; row < kTerms; ++row) {
      const double factor = a[row][col] / a[col][col];
      for (int k = col; k < kTerms; ++k) a[row][k] -= factor * a[col][k];
      b[row] -= factor * b[col];
    }
  }
  for (int row = kTerms - 1; row >= 0; --row) {
    double sum = b[row];
    for (int k = row + 1; k < kTerms; ++k) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  for (double v : x) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

}  // namespace

void StepShape::add_chunk(int64_t start, int64_t num_tokens, int64_t num_logit_rows) {
  const auto n = static_cast<double>(num_tokens), s = static_cast<double>(start);
  tokens += n;
  logit_rows += static_cast<double>(num_logit_rows);
  context_pairs += n * s + n * (n + 1) / 2;
}

StepCostModel::StepCostModel(Coefficients prior, size_t window) : prior_(prior), fitted_(prior), window_(window) {}

double StepCostModel::predict(const StepShape& shape) const {
  return fitted_.fixed_s + fitted_.per_token_s * shape.tokens + fitted_.per_context_s * shape.context_pairs +
         fitted_.per_logit_row_s * shape.logit_rows;
}

void StepCostModel::observe(const StepShape& shape, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return;
  samples_.push_back({shape, seconds});
  if (samples_.size() > window_) samples_.pop_front();
  ++num_observed_;
  refit();
}

void StepCostModel::refit() {
  // Scaled coefficients: theta = (fixed, per_token * kTokenScale, per_context * kPairScale, per_logit_row * kRowScale).
  const Vec prior = {prior_.fixed_s, prior_.per_token_s * kTokenScale, prior_.per_context_s * kPairScale,
                     prior_.per_logit_row_s * kRowScale};
  // Ridge towards the prior, relative to each coefficient's size so that "worth kPriorWeight steps"
  // means the same for all three: minimise sum (x.theta - y)^2 + w * sum ((theta_i - prior_i) / prior_i * y0)^2,
  // with y0 a typical step time (the prior's fixed term plus one token), written as diagonal weights.
  const double typical_step = prior[0] + prior[1] / kTokenScale;
  Mat a{};
  Vec b{};
  for (int i = 0; i < kTerms; ++i) {
    // A zero prior term (a machine said to have no such cost) is held on the scale of a typical step.
    const double scale = prior[i] > 0 ? prior[i] : typical_step;
    const double weight = kPriorWeight * (typical_step / scale) * (typical_step / scale);
    a[i][i] += weight;
    b[i] += weight * prior[i];
  }
  for (const Sample& sample : samples_) {
    const Vec x = features(sample.shape);
    for (int i = 0; i < kTerms; ++i) {
      for (int j = 0; j < kTerms; ++j) a[i][j] += x[i] * x[j];
      b[i] += x[i] * sample.seconds;
    }
  }
  Vec theta{};
  if (!solve(a, b, theta)) return;  // keep the previous fit
  fitted_.fixed_s = std::max(0.0, theta[0]);
  fitted_.per_token_s = std::max(0.0, theta[1] / kTokenScale);
  fitted_.per_context_s = std::max(0.0, theta[2] / kPairScale);
  fitted_.per_logit_row_s = std::max(0.0, theta[3] / kRowScale);
}

}  // namespace tern::engine
