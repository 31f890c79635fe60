// The sampler's cost per token, one thread: Sampler::sample on a row of random logits (normal(0, 3),
// the spread of a small model's logits; a real model's are peakier, so its top-p nucleus is smaller),
// for several settings, at SmolLM2's and Gemma 3's vocabulary sizes. Each draw copies a fresh row in,
// as the engine hands the sampler one (that copy is most of the greedy row). Prints microseconds per
// token, the median of the repeats, and a checksum of the tokens drawn (the same for the same code).
//   build/bench/sampler_throughput [DRAWS=500] [REPEATS=7]

#include <algorithm>
#include <cstdint>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"

namespace {

using tern::engine::Sampler;
using tern::engine::SamplingParams;

struct Setting {
  std::string name;
  SamplingParams params;
};

// Microseconds per token over `draws` draws, and the tokens drawn.
double time_draws(const SamplingParams& params, const std::vector<float>& logits, int draws, std::vector<int32_t>& tokens) {
  Sampler sampler(params);
  const std::vector<int32_t> history(static_cast<size_t>(draws), 0);
  std::vector<float> row(logits.size());
  tokens.clear();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < draws; ++i) {
    std::copy(logits.begin(), logits.end(), row.begin());
    tokens.push_back(sampler.sample(row, std::span(history).first(static_cast<size_t>(i))));
  }
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / draws;
}

}  // namespace

int main(int argc, char** argv) {
  const int draws = argc > 1 ? std::atoi(argv[1]) : 500;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 7;
  if (draws <= 0 || repeats <= 0) {
    std::fprintf(stderr, "usage: sampler_throughput [DRAWS > 0] [REPEATS > 0]\n");
    return 2;
  }
  std::printf("%-8s %-26s %12s %20s\n", "vocab", "setting", "us/token", "tokens checksum");
  for (const int vocab : {49152, 262144}) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (float& v : logits) v = normal(rng);
    const Setting settings[] = {
        {"greedy", {.temperature = 0.0f}},
        {"temperature=1", {.temperature = 1.0f, .seed = 1}},
        {"temperature=0.7 min_p=0.05", {.temperature = 0.7f, .min_p = 0.05f, .seed = 1}},
        {"top_k=40", {.temperature = 0.7f, .top_k = 40, .seed = 1}},
        {"top_p=0.9", {.temperature = 1.0f, .top_p = 0.9f, .seed = 1}},
        {"top_k=40 top_p=0.95", {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 1}},
    };
    for (const Setting& setting : settings) {
      std::vector<double> times;
      std::vector<int32_t> tokens;
      for (int r = 0; r < repeats; ++r) times.push_back(time_draws(setting.params, logits, draws, tokens));
      std::nth_element(times.begin(), times.begin() + repeats / 2, times.end());
      uint64_t checksum = 0;
      for (const int32_t token : tokens) checksum = checksum * 31 + static_cast<uint64_t>(token);
      std::printf("%-8d %-26s %12.1f %20llu\n", vocab, setting.name.c_str(), times[static_cast<size_t>(repeats / 2)],
                  static_cast<unsigned long long>(checksum));
    }
  }
  return 0;
}
