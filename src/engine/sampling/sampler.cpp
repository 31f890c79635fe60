#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>

namespace tern::engine {

Result<void> SamplingParams::validate() const {
  if (!(temperature >= 0.0f && temperature <= 100.0f)) return fail("temperature {} is outside [0, 100]", temperature);
  if (top_k < 0) return fail("top_k {} is negative", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) return fail("top_p {} is outside (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return fail("min_p {} is outside [0, 1]", min_p);
  if (!(repetition_penalty > 0.0f && repetition_penalty <= 10.0f)) return fail("repetition_penalty {} is outside (0, 10]", repetition_penalty);
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) return fail("presence_penalty {} is outside [-2, 2]", presence_penalty);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) return fail("frequency_penalty {} is outside [-2, 2]", frequency_penalty);
  return {};
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const bool has_penalty = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                           params_.frequency_penalty != 0.0f;
  if (has_penalty && !history.empty()) {
    counts_.assign(static_cast<size_t>(vocab), 0);
    for (int32_t token : history) {
      if (token >= 0 && token < vocab) ++counts_[token];
    }
    for (int32_t token = 0; token < vocab; ++token) {
      const int32_t count = counts_[token];
      if (count == 0) continue;
      float& logit = logits[token];
      if (params_.repetition_penalty != 1.0f) logit = logit > 0 ? logit / params_.repetition_penalty : logit * params_.repetition_penalty;
      logit -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
  if (params_.temperature == 0.0f) {
    // Greedy; ties go to the lowest id, as in llama.cpp.
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  candidates_.clear();
  candidates_.reserve(static_cast<size_t>(vocab));
  for (int32_t token = 0; token < vocab; ++token) candidates_.emplace_back(logits[token] / params_.temperature, token);
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<long>(keep), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  // Probabilities of the survivors (sorted, so the max is first).
  const float max_logit = candidates_.front().first;
  double total = 0;
  for (auto& [value, token] : candidates_) total += (value = std::exp(value - max_logit));
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * candidates_.front().first;
    size_t n = 1;
    while (n < candidates_.size() && candidates_[n].first >= threshold) ++n;
    candidates_.resize(n);
  }
  if (params_.top_p < 1.0f) {
    double sum = 0, kept_total = 0;
    for (const auto& c : candidates_) kept_total += c.first;
    size_t n = 0;
    while (n < candidates_.size()) {
      sum += candidates_[n].first;
      ++n;
      if (sum >= params_.top_p * kept_total) break;
    }
    candidates_.resize(n);
  }
  total = 0;
  for (const auto& c : candidates_) total += c.first;
  std::uniform_real_distribution<double> uniform(0.0, total);
  double draw = uniform(rng_);
  for (const auto& [weight, token] : candidates_) {
    draw -= weight;
    if (draw <= 0) return token;
  }
  return candidates_.back().second;
}

}  // namespace tern::engine
