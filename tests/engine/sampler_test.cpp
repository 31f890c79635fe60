// Sampler: the O(vocab) truncation (top-k by partial sort, min-p by threshold, top-p by a growing
// sorted prefix) keeps exactly the tokens a full sort would, and draws them with the right
// frequencies. The reference below is the textbook algorithm: sort everything, cut, renormalise.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"

namespace tern::engine {
namespace {

std::map<int32_t, double> reference_distribution(const std::vector<float>& logits, const SamplingParams& p) {
  std::vector<std::pair<double, int32_t>> c;
  for (size_t i = 0; i < logits.size(); ++i) c.emplace_back(logits[i] / p.temperature, static_cast<int32_t>(i));
  std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < c.size()) c.resize(static_cast<size_t>(p.top_k));
  const double max = c.front().first;
  for (auto& [v, t] : c) v = std::exp(v - max);
  if (p.min_p > 0) std::erase_if(c, [&](auto& x) { return x.first < p.min_p; });  // p / p_max, p_max = 1 here
  double total = 0;
  for (auto& x : c) total += x.first;
  if (p.top_p < 1) {
    double sum = 0;
    size_t n = 0;
    while (n < c.size()) {
      sum += c[n++].first;
      if (sum >= p.top_p * total) break;
    }
    c.resize(n);
  }
  total = 0;
  for (auto& x : c) total += x.first;
  std::map<int32_t, double> out;
  for (auto& [w, t] : c) out[t] = w / total;
  return out;
}

class SamplerTruncation : public ::testing::TestWithParam<SamplingParams> {};

TEST_P(SamplerTruncation, MatchesTheFullSortReference) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(997);  // odd size, above the 64-entry first prefix of top-p
  for (float& v : logits) v = normal(rng);
  const SamplingParams params = GetParam();
  const auto expected = reference_distribution(logits, params);

  Sampler sampler(params);
  std::map<int32_t, int> counts;
  constexpr int kDraws = 40000;
  // Each draw at its own position (the length of the history): the draw is keyed by (seed, position).
  const std::vector<int32_t> history(kDraws, 0);
  for (int i = 0; i < kDraws; ++i) {
    std::vector<float> row = logits;
    ++counts[sampler.sample(row, std::span(history).first(static_cast<size_t>(i)))];
  }
  for (const auto& [token, n] : counts) EXPECT_TRUE(expected.contains(token)) << "token " << token << " is outside the kept set";
  // Frequencies within 5 standard errors (binomial) plus a little: a wrong cut or weight shows far beyond.
  for (const auto& [token, prob] : expected) {
    const double freq = static_cast<double>(counts[token]) / kDraws;
    const double tolerance = 5 * std::sqrt(prob * (1 - prob) / kDraws) + 1e-3;
    EXPECT_NEAR(freq, prob, tolerance) << "token " << token;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Settings, SamplerTruncation,
    ::testing::Values(SamplingParams{.temperature = 1.0f},
                      SamplingParams{.temperature = 0.7f, .top_k = 40},
                      SamplingParams{.temperature = 1.0f, .top_p = 0.9f},
                      SamplingParams{.temperature = 1.5f, .top_p = 0.99f},  // a nucleus far past 64 entries
                      SamplingParams{.temperature = 0.8f, .min_p = 0.05f},
                      SamplingParams{.temperature = 1.0f, .top_k = 100, .top_p = 0.8f, .min_p = 0.02f}),
    [](const ::testing::TestParamInfo<SamplingParams>& info) {
      const SamplingParams& p = info.param;
      return "t" + std::to_string(static_cast<int>(p.temperature * 100)) + "_k" + std::to_string(p.top_k) + "_p" +
             std::to_string(static_cast<int>(p.top_p * 100)) + "_minp" + std::to_string(static_cast<int>(p.min_p * 100));
    });

// Cuts that fall inside a run of equal logits (the cut bucket's tokens are ordered by weight, then id)
// keep the lower ids, exactly as the full sort does: top-k of 250 over 200 tokens at the top level and
// 200 at the next takes that level's 50 lowest ids; top-p likewise mid-level; and a bucket holding
// every token (all logits equal) is cut the same way.
TEST(SamplerTruncationTies, KeepTheLowerIdsLikeTheFullSort) {
  std::vector<float> levels(1000);
  for (size_t i = 0; i < levels.size(); ++i) levels[i] = 0.5f * static_cast<float>((i * 7) % 5);
  std::vector<float> flat(1000, 1.25f);
  const SamplingParams settings[] = {{.temperature = 1.0f, .top_k = 250}, {.temperature = 1.0f, .top_p = 0.5f},
                                     {.temperature = 0.5f, .top_k = 3, .top_p = 0.9f}};
  for (const auto* logits : {&levels, &flat}) {
    for (const SamplingParams& params : settings) {
      const auto expected = reference_distribution(*logits, params);
      Sampler sampler(params);
      std::map<int32_t, int> counts;
      constexpr int kDraws = 20000;
      const std::vector<int32_t> history(kDraws, 0);
      for (int i = 0; i < kDraws; ++i) {
        std::vector<float> row = *logits;
        ++counts[sampler.sample(row, std::span(history).first(static_cast<size_t>(i)))];
      }
      for (const auto& [token, n] : counts) {
        ASSERT_TRUE(expected.contains(token)) << "token " << token << " is outside the kept set (top_k " << params.top_k << ", top_p " << params.top_p << ")";
      }
      for (const auto& [token, prob] : expected) {
        EXPECT_NEAR(static_cast<double>(counts[token]) / kDraws, prob, 5 * std::sqrt(prob * (1 - prob) / kDraws) + 1e-3) << "token " << token;
      }
    }
  }
}

// The two-pass greedy choice is std::max_element's, ties (and -0 against +0) to the first id, on
// every length around the 8-wide lanes, with values drawn from a few levels so that ties are common,
// and with NaNs (which a broken model could produce) anywhere.
TEST(GreedyToken, IsTheFirstLargestLikeMaxElement) {
  std::mt19937 rng(21);
  const float levels[] = {-1.0f, -0.0f, 0.0f, 0.5f, 2.0f, 2.0f, 7.0f, std::nanf("")};
  for (int n = 1; n <= 70; ++n) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> logits(static_cast<size_t>(n));
      const int num_levels = trial % 2 == 0 ? 7 : 8;  // every other trial may hold NaNs
      for (float& v : logits) v = levels[rng() % num_levels];
      const auto expected = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ASSERT_EQ(greedy_token(logits), expected) << "n=" << n << " trial=" << trial;
    }
  }
  std::vector<float> vocab(262144);
  std::normal_distribution<float> normal;
  for (float& v : vocab) v = normal(rng);
  vocab[200000] = 100.0f;
  EXPECT_EQ(greedy_token(vocab), 200000);
}

}  // namespace
}  // namespace tern::engine

namespace tern::engine {
namespace {

// Speculative decoding's check of a guess (rejection sampling against a proposal certain of its guess)
// accepts it with exactly its probability and leaves the sampler's distribution as it was, whatever the
// guess: the likeliest token, an unlikely one, or one the truncation removed; and it picks the token
// sample() picks at the same position.
class SamplerVerify : public ::testing::TestWithParam<SamplingParams> {};

TEST_P(SamplerVerify, DrawsTheSamplersDistributionWhateverTheGuess) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(997);
  for (float& v : logits) v = normal(rng);
  const SamplingParams params = GetParam();
  const auto expected = reference_distribution(logits, params);
  std::vector<std::pair<double, int32_t>> by_prob;
  for (const auto& [token, prob] : expected) by_prob.emplace_back(prob, token);
  std::sort(by_prob.rbegin(), by_prob.rend());
  int32_t outside = 0;
  while (expected.contains(outside)) ++outside;
  const int32_t guesses[] = {by_prob.front().second, by_prob[by_prob.size() / 2].second, outside};
  for (const int32_t guess : guesses) {
    Sampler sampler(params);
    std::map<int32_t, int> counts;
    constexpr int kDraws = 40000;
    int accepted = 0;
    const std::vector<int32_t> history(kDraws, 0);
    for (int i = 0; i < kDraws; ++i) {
      std::vector<float> row = logits;
      const auto before = std::span(history).first(static_cast<size_t>(i));
      const Sampler::Verdict verdict = sampler.verify(row, before, guess);
      // The same token sample() picks at that position, from a sampler of the same seed.
      std::vector<float> again = logits;
      ASSERT_EQ(Sampler(params).sample(again, before), verdict.token);
      ASSERT_EQ(verdict.is_guess, verdict.token == guess);
      accepted += verdict.is_guess;
      ++counts[verdict.token];
    }
    for (const auto& [token, n] : counts) EXPECT_TRUE(expected.contains(token)) << "guess " << guess << ": token " << token << " is outside the kept set";
    for (const auto& [token, prob] : expected) {
      const double freq = static_cast<double>(counts[token]) / kDraws;
      EXPECT_NEAR(freq, prob, 5 * std::sqrt(prob * (1 - prob) / kDraws) + 1e-3) << "guess " << guess << ", token " << token;
    }
    const double p_guess = expected.contains(guess) ? expected.at(guess) : 0.0;
    EXPECT_NEAR(static_cast<double>(accepted) / kDraws, p_guess, 5 * std::sqrt(p_guess * (1 - p_guess) / kDraws) + 1e-3) << "guess " << guess;
  }
}

INSTANTIATE_TEST_SUITE_P(Settings, SamplerVerify,
                         ::testing::Values(SamplingParams{.temperature = 1.0f}, SamplingParams{.temperature = 0.7f, .top_k = 40},
                                           SamplingParams{.temperature = 1.0f, .top_p = 0.9f},
                                           SamplingParams{.temperature = 1.0f, .top_k = 100, .top_p = 0.8f, .min_p = 0.02f}),
                         [](const ::testing::TestParamInfo<SamplingParams>& info) {
                           const SamplingParams& p = info.param;
                           return "t" + std::to_string(static_cast<int>(p.temperature * 100)) + "_k" + std::to_string(p.top_k) + "_p" +
                                  std::to_string(static_cast<int>(p.top_p * 100));
                         });

// A draw is keyed by (seed, position): the same seed and position give the same token whatever was
// drawn before; another position or seed draws anew.
TEST(SamplerDraws, AreKeyedBySeedAndPosition) {
  std::vector<float> logits(50, 0.0f);  // uniform: every token as likely
  const std::vector<int32_t> history(64, 7);
  const auto pick = [&](uint64_t seed, size_t position) {
    Sampler sampler({.temperature = 1.0f, .seed = seed});
    std::vector<float> row = logits;
    return sampler.sample(row, std::span(history).first(position));
  };
  Sampler busy({.temperature = 1.0f, .seed = 5});
  for (int i = 0; i < 10; ++i) {  // draws at other positions do not move position 20's
    std::vector<float> row = logits;
    busy.sample(row, std::span(history).first(static_cast<size_t>(i)));
  }
  std::vector<float> row = logits;
  EXPECT_EQ(busy.sample(row, std::span(history).first(20)), pick(5, 20));
  int same_position_other_seed = 0, same_seed_other_position = 0;
  for (size_t p = 0; p < 64; ++p) {
    same_position_other_seed += pick(5, p) == pick(6, p);
    same_seed_other_position += pick(5, p) == pick(5, (p + 1) % 64);
  }
  EXPECT_LT(same_position_other_seed, 10);  // 64 / 50 expected by chance
  EXPECT_LT(same_seed_other_position, 10);
}

// A masked token (-inf, as a grammar masks) is never drawn, under every truncation setting, including
// the whole-vocabulary path that computes weights in place and the ones that order candidates; tokens
// masked at the start of the row and in between are all covered.
TEST(SamplerDraws, NeverAMaskedToken) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(1003);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = i < 10 || i % 3 == 0 ? -INFINITY : normal(rng);
  logits[500] = 30.0f;  // one dominant token: the rest are light, the edge cases of the draw's walk
  const SamplingParams settings[] = {{.temperature = 1.0f}, {.temperature = 0.3f}, {.temperature = 2.0f, .min_p = 0.5f},
                                     {.temperature = 1.0f, .top_k = 2000}, {.temperature = 1.0f, .top_p = 0.5f},
                                     {.temperature = 5.0f, .top_k = 700, .top_p = 0.999f, .min_p = 0.001f}};
  for (const SamplingParams& params : settings) {
    for (uint64_t seed = 0; seed < 4; ++seed) {
      SamplingParams seeded = params;
      seeded.seed = seed;
      Sampler sampler(seeded);
      const std::vector<int32_t> history(2000, 0);
      for (size_t position = 0; position < 2000; ++position) {
        std::vector<float> row = logits;
        const int32_t token = sampler.sample(row, std::span(history).first(position));
        ASSERT_TRUE(token >= 0 && token < 1003 && !std::isinf(logits[static_cast<size_t>(token)]))
            << "drew masked token " << token << " (temperature " << params.temperature << ", top_k " << params.top_k << ")";
      }
    }
  }
}

// Greedy: the greedy token, and whether it is the guess; penalties count the history as sample() does.
TEST(SamplerVerifyGreedy, IsTheGreedyTokenWithPenalties) {
  std::vector<float> logits = {1.0f, 3.0f, 2.9f, 0.5f};
  const std::vector<int32_t> history = {1, 1};
  Sampler plain({.temperature = 0.0f, .frequency_penalty = 0.1f});
  std::vector<float> row = logits;
  const int32_t want = plain.sample(row, history);
  EXPECT_EQ(want, 2);  // 3.0 - 0.2 < 2.9
  Sampler verifying({.temperature = 0.0f, .frequency_penalty = 0.1f});
  row = logits;
  EXPECT_EQ(verifying.verify(row, history, 2).token, 2);
  row = logits;
  const auto refused = verifying.verify(row, history, 1);
  EXPECT_EQ(refused.token, 2);
  EXPECT_FALSE(refused.is_guess);
}

}  // namespace
}  // namespace tern::engine
