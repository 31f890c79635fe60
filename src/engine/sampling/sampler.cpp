#include "engine/sampling/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/cpu/vector_ops.h"

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

namespace {

// Weights are in (0, 1]; a positive float's bits order like its value, so bits >> 19 (the exponent and
// the top 4 mantissa bits) are buckets of 1/16 of an octave, in order. Any positive float's bucket is
// below 4096.
constexpr int kBucketShift = 19;
constexpr size_t kNumBuckets = size_t{1} << (31 - kBucketShift);

uint32_t bucket_of(float weight) { return std::bit_cast<uint32_t>(weight) >> kBucketShift; }

}  // namespace

template <bool kBySum, typename Enough>
double Sampler::keep_heaviest(std::span<float> weights, Enough enough) {
  bucket_counts_.assign(kNumBuckets, 0);
  bucket_sums_.assign(kNumBuckets, 0.0);
  for (const float w : weights) {
    if (!(w > 0.0f)) continue;
    ++bucket_counts_[bucket_of(w)];
    if constexpr (kBySum) bucket_sums_[bucket_of(w)] += w;
  }
  // The bucket in which `enough` first holds, from the heaviest down.
  uint64_t count = 0;
  double sum = 0;
  size_t cut = kNumBuckets;
  for (size_t b = kNumBuckets; b-- > 0;) {
    if (bucket_counts_[b] == 0) continue;
    if (enough(count + bucket_counts_[b], sum + bucket_sums_[b])) {
      cut = b;
      break;
    }
    count += bucket_counts_[b];
    sum += bucket_sums_[b];
  }
  // Heavier buckets stay, lighter ones go, and the cut bucket's tokens are set aside (zeroed) to be
  // taken back in order. The kept total is summed here (a count-only cut has no bucket sums), and the
  // kept tokens are listed while they are few.
  boundary_.clear();
  kept_.clear();
  sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    float& w = weights[i];
    if (!(w > 0.0f)) continue;
    const uint32_t b = bucket_of(w);
    if (b > cut || cut == kNumBuckets) {
      sum += w;
      if (kept_.size() <= kMaxListed) kept_.push_back(static_cast<int32_t>(i));
      continue;
    }
    if (b == cut) boundary_.emplace_back(w, static_cast<int32_t>(i));
    w = 0.0f;
  }
  return take_back_in_order(weights, count, sum, enough);
}

template <typename Enough>
double Sampler::take_back_in_order(std::span<float> weights, uint64_t count, double sum, Enough enough) {
  std::sort(boundary_.begin(), boundary_.end(),
            [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  for (const auto& [w, token] : boundary_) {
    weights[static_cast<size_t>(token)] = w;
    ++count;
    sum += w;
    if (kept_.size() <= kMaxListed) kept_.push_back(token);
    if (enough(count, sum)) break;
  }
  return sum;
}

double Sampler::weigh_and_truncate(std::span<float> weights) {
  const auto n = static_cast<int64_t>(weights.size());
  double total = kernels::vector_ops().sampling_weights(n, 1.0f / params_.temperature, weights.data(), weights.data());
  if (params_.min_p > 0.0f) {
    // The largest weight is exactly 1, so p / p_max is the weight itself. Four running sums: one
    // chain of dependent double additions would take most of the time.
    double sums[4] = {};
    size_t i = 0;
    for (; i + 4 <= weights.size(); i += 4) {
      for (size_t l = 0; l < 4; ++l) {
        float& w = weights[i + l];
        sums[l] += (w = w >= params_.min_p ? w : 0.0f);
      }
    }
    for (; i < weights.size(); ++i) sums[0] += (weights[i] = weights[i] >= params_.min_p ? weights[i] : 0.0f);
    total = (sums[0] + sums[1]) + (sums[2] + sums[3]);
  }
  if (params_.top_k > 0) {
    const auto k = static_cast<uint64_t>(params_.top_k);
    total = keep_heaviest<false>(weights, [k](uint64_t count, double) { return count >= k; });
  }
  if (params_.top_p < 1.0f) {
    const double target = params_.top_p * total;
    const auto enough = [target](uint64_t, double sum) { return sum >= target; };
    if (params_.top_k > 0 && kept_.size() <= kMaxListed) {
      // Few tokens survived top-k, and they are listed: order just them.
      boundary_.clear();
      for (const int32_t token : kept_) {
        float& w = weights[static_cast<size_t>(token)];
        boundary_.emplace_back(w, token);
        w = 0.0f;
      }
      kept_.clear();
      total = take_back_in_order(weights, 0, 0.0, enough);
    } else {
      total = keep_heaviest<true>(weights, enough);
    }
  }
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

int32_t Sampler::draw(std::span<const float> weights, double total, double u) {
  // Whole chunks are skipped by their sums (eight float lanes the compiler vectorises), and only the
  // chunk the draw lands in is walked token by token. Zero weights (cut, or masked by a grammar) are
  // never drawn: with u = 0 the first token would otherwise be drawn whatever its weight.
  constexpr size_t kChunk = 256, kLanes = 8;
  double remaining = u * total;
  size_t begin = 0, last_with_weight = 0;
  bool any = false;
  for (; begin + kChunk <= weights.size(); begin += kChunk) {
    float lanes[kLanes] = {};
    for (size_t i = begin; i < begin + kChunk; i += kLanes) {
      for (size_t l = 0; l < kLanes; ++l) lanes[l] += weights[i + l];
    }
    double chunk = 0;
    for (const float lane : lanes) chunk += lane;
    if (!(chunk > 0)) continue;
    if (remaining - chunk > 0) {
      remaining -= chunk;
      last_with_weight = begin, any = true;
      continue;
    }
    break;  // the draw lands in this chunk
  }
  int32_t last = -1;
  for (size_t i = begin; i < weights.size(); ++i) {
    if (!(weights[i] > 0.0f)) continue;
    last = static_cast<int32_t>(i);
    remaining -= weights[i];
    if (remaining <= 0) return last;
  }
  if (last >= 0) return last;  // rounding left a sliver of `remaining`: the last token with weight
  if (any) {
    for (size_t i = last_with_weight + kChunk; i-- > last_with_weight;) {
      if (weights[i] > 0.0f) return static_cast<int32_t>(i);
    }
  }
  // No token has weight only when every logit was -inf (a grammar refuses that before the sampler
  // sees it): the greedy choice, token 0.
  return 0;
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  apply_penalties(logits, history);
  // Greedy; ties go to the lowest id, as in llama.cpp.
  if (params_.temperature == 0.0f) return greedy_token(logits);
  const double total = weigh_and_truncate(logits);
  return draw(logits, total, uniform_at(history.size()));
}

Sampler::Verdict Sampler::verify(std::span<float> logits, std::span<const int32_t> history, int32_t guess) {
  const int32_t token = sample(logits, history);
  return {token, token == guess};
}

}  // namespace tern::engine
