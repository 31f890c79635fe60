#include "engine/sched/step_cost_model.h"

#include <algorithm>
#include <cmath>

namespace tern::engine {
namespace {

// The regression runs on scaled features so the three columns have comparable magnitudes (a step
// has ~1-512 tokens and up to millions of context pairs); the ridge weight is in those units.
constexpr double kTokenScale = 100.0;
constexpr double kPairScale = 1e5;
// How strongly the prior holds: worth about this many steps of data in each direction.
constexpr double kPriorWeight = 2.0;

using Vec3 = std::array<double, 3>;
using Mat3 = std::array<Vec3, 3>;

Vec3 features(const StepShape& shape) { return {1.0, shape.tokens / kTokenScale, shape.context_pairs / kPairScale}; }

/// Solves a x = b for a symmetric positive-definite 3x3 a (Gaussian elimination with pivoting).
bool solve3(Mat3 a, Vec3 b, Vec3& x) {
  for (int col = 0; col < 3; ++col) {
    int pivot = col;
    for (int row = col + 1; row < 3; ++row) {
      if (std::abs(a[row][col]) > std::abs(a[pivot][col])) pivot = row;
    }
    if (std::abs(a[pivot][col]) < 1e-300) return false;
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (int row = col + 1; row < 3; ++row) {
      const double factor = a[row][col] / a[col][col];
      for (int k = col; k < 3; ++k) a[row][k] -= factor * a[col][k];
      b[row] -= factor * b[col];
    }
  }
  for (int row = 2; row >= 0; --row) {
    double sum = b[row];
    for (int k = row + 1; k < 3; ++k) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return std::isfinite(x[0]) && std::isfinite(x[1]) && std::isfinite(x[2]);
}

}  // namespace

void StepShape::add_chunk(int64_t start, int64_t num_tokens) {
  const auto n = static_cast<double>(num_tokens), s = static_cast<double>(start);
  tokens += n;
  context_pairs += n * s + n * (n + 1) / 2;
}

StepCostModel::StepCostModel(Coefficients prior, size_t window) : prior_(prior), fitted_(prior), window_(window) {}

double StepCostModel::predict(const StepShape& shape) const {
  return fitted_.fixed_s + fitted_.per_token_s * shape.tokens + fitted_.per_context_s * shape.context_pairs;
}

void StepCostModel::observe(const StepShape& shape, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return;
  samples_.push_back({shape, seconds});
  if (samples_.size() > window_) samples_.pop_front();
  ++num_observed_;
  refit();
}

void StepCostModel::refit() {
  // Scaled coefficients: theta = (fixed, per_token * kTokenScale, per_context * kPairScale).
  const Vec3 prior = {prior_.fixed_s, prior_.per_token_s * kTokenScale, prior_.per_context_s * kPairScale};
  // Ridge towards the prior, relative to each coefficient's size so that "worth kPriorWeight steps"
  // means the same for all three: minimise sum (x.theta - y)^2 + w * sum ((theta_i - prior_i) / prior_i * y0)^2,
  // with y0 a typical step time (the prior's fixed term plus one token), written as diagonal weights.
  const double typical_step = prior[0] + prior[1] / kTokenScale;
  Mat3 a{};
  Vec3 b{};
  for (int i = 0; i < 3; ++i) {
    const double weight = kPriorWeight * (typical_step / prior[i]) * (typical_step / prior[i]);
    a[i][i] += weight;
    b[i] += weight * prior[i];
  }
  for (const Sample& sample : samples_) {
    const Vec3 x = features(sample.shape);
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) a[i][j] += x[i] * x[j];
      b[i] += x[i] * sample.seconds;
    }
  }
  Vec3 theta{};
  if (!solve3(a, b, theta)) return;  // keep the previous fit
  fitted_.fixed_s = std::max(0.0, theta[0]);
  fitted_.per_token_s = std::max(0.0, theta[1] / kTokenScale);
  fitted_.per_context_s = std::max(0.0, theta[2] / kPairScale);
}

}  // namespace tern::engine
