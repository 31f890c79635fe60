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

int32_t greedy_token(std::span<const float> logits) {
  if (logits.empty()) return 0;
  // Pass 1: the largest value, over eight independent running maxima.
  constexpr size_t kLanes = 8;
  float lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, logits[0]);
  size_t i = 0;
  for (; i + kLanes <= logits.size(); i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) lane_max[l] = logits[i + l] > lane_max[l] ? logits[i + l] : lane_max[l];
  }
  float largest = lane_max[0];
  for (size_t l = 1; l < kLanes; ++l) largest = lane_max[l] > largest ? lane_max[l] : largest;
  for (; i < logits.size(); ++i) largest = logits[i] > largest ? logits[i] : largest;
  // Pass 2: its first position (== also matches -0 to +0, as max_element keeps the first of those).
  const auto found = std::find(logits.begin(), logits.end(), largest);
  // Not found only when NaNs hid the largest value: then exactly what max_element would say.
  const auto at = found != logits.end() ? found : std::max_element(logits.begin(), logits.end());
  return static_cast<int32_t>(at - logits.begin());
}

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> history) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const bool has_penalty = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                           params_.frequency_penalty != 0.0f;
  if (!has_penalty || history.empty()) return;
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

double Sampler::build_candidates(std::span<const float> logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  // Work in O(vocab): only top-k and top-p need an order, and top-p only as far as its nucleus goes,
  // so the full vocabulary is never sorted.
  candidates_.clear();
  candidates_.reserve(static_cast<size_t>(vocab));
  for (int32_t token = 0; token < vocab; ++token) candidates_.emplace_back(logits[token] / params_.temperature, token);
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < candidates_.size()) {
    const auto keep = static_cast<long>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
    candidates_.resize(static_cast<size_t>(keep));
  }
  float max_logit = -INFINITY;
  for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
  if (params_.min_p > 0.0f) {
    // p / p_max = exp(value - max): keep value >= max + log(min_p).
    const float threshold = max_logit + std::log(params_.min_p);
    std::erase_if(candidates_, [threshold](const auto& c) { return c.first < threshold; });
  }
  double total = 0;
  for (auto& [value, token] : candidates_) total += (value = std::exp(value - max_logit));
  if (params_.top_p < 1.0f) {
    // Sort a growing prefix until it holds the nucleus (a prefix of a sort by a strict order is the
    // same as that prefix of the full sort).
    const double target = params_.top_p * total;
    size_t sorted = 0;
    size_t n = 0;
    double sum = 0;
    while (true) {
      const size_t want = std::min(candidates_.size(), std::max<size_t>(64, sorted * 4));
      std::partial_sort(candidates_.begin() + static_cast<long>(sorted), candidates_.begin() + static_cast<long>(want),
                        candidates_.end(), by_logit);
      sorted = want;
      while (n < sorted) {
        sum += candidates_[n].first;
        ++n;
        if (sum >= target) break;
      }
      if (sum >= target || sorted == candidates_.size()) break;
    }
    candidates_.resize(n);
  }
  total = 0;
  for (const auto& c : candidates_) total += c.first;
  return total;
}

double Sampler::uniform_at(size_t position) const {
  // splitmix64 of (seed, position): independent, evenly spread draws per position.
  uint64_t z = params_.seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(position) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int32_t Sampler::draw(double total, double u) {
  double draw = u * total;
  for (const auto& [weight, token] : candidates_) {
    draw -= weight;
    if (draw <= 0) return token;
  }
  return candidates_.back().second;
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  apply_penalties(logits, history);
  // Greedy; ties go to the lowest id, as in llama.cpp.
  if (params_.temperature == 0.0f) return greedy_token(logits);
  return draw(build_candidates(logits), uniform_at(history.size()));
}

Sampler::Verdict Sampler::verify(std::span<float> logits, std::span<const int32_t> history, int32_t guess) {
  const int32_t token = sample(logits, history);
  return {token, token == guess};
}

}  // namespace tern::engine
