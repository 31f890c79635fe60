#pragma once
// Test helpers for constrained decoding: a model's vocabulary (tokenizer and end tokens) and a random
// walk through a grammar, choosing among the tokens its mask leaves.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar/grammar.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace tern::engine {

struct Vocabulary {
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::vector<int32_t> end_tokens;
};

inline Vocabulary load(const std::string& path) {
  auto file = gguf::GgufFile::open(path);
  EXPECT_TRUE(file) << file.error().message;
  auto tokenizer = tok::Tokenizer::from_gguf(*file);
  EXPECT_TRUE(tokenizer) << tokenizer.error().message;
  Vocabulary out{std::make_unique<tok::Tokenizer>(std::move(*tokenizer)), {}};
  if (out.tokenizer->vocab().eos) out.end_tokens.push_back(*out.tokenizer->vocab().eos);
  return out;
}

/// Walks the grammar choosing at random among the tokens the mask leaves (an end token as soon as one
/// is allowed); returns the text, or nullopt if the walk did not end within `max_steps`.
inline std::optional<std::string> random_walk(TokenConstraint& constraint, const Vocabulary& v, uint32_t seed, int max_steps) {
  std::mt19937 rng(seed);
  std::vector<float> logits(v.tokenizer->vocab().size());
  std::string text;
  for (int step = 0; step < max_steps; ++step) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    EXPECT_TRUE(constraint.mask_logits(logits)) << "a dead end after " << text;
    std::vector<int32_t> allowed;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (std::isfinite(logits[i])) allowed.push_back(static_cast<int32_t>(i));
    }
    if (allowed.empty()) return std::nullopt;
    for (int32_t end : v.end_tokens) {
      if (std::find(allowed.begin(), allowed.end(), end) != allowed.end()) {
        EXPECT_TRUE(constraint.accept(end));
        return text;
      }
    }
    const int32_t token = allowed[rng() % allowed.size()];
    EXPECT_TRUE(constraint.accept(token));
    text += v.tokenizer->token_bytes(token);
  }
  return std::nullopt;
}

}  // namespace tern::engine
