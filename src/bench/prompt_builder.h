#pragma once
// Builds prompt text of an exact token length, reproducibly from a seed. With a model's tokenizer, the
// words are vocabulary entries that are one token with a leading space (" river", "Ġriver" in BPE,
// "▁river" in SentencePiece): pre-tokenizers split at spaces, so n such words encode to n tokens, and the
// builder checks the count with the tokenizer and adds or drops words until it is exact.
//
// Without a model (or in tests) a whitespace-word counter stands in: one word is one "token". The fixture
// server counts the same way, so client and server counts then agree exactly.

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "util/result.h"

namespace tern::bench {

class PromptBuilder {
 public:
  /// Words of `tokenizer`'s vocabulary that encode to exactly one token; fails if too few exist.
  static Result<PromptBuilder> from_tokenizer(std::shared_ptr<const tok::Tokenizer> tokenizer);
  /// One whitespace-separated word = one token.
  static PromptBuilder whitespace_words();

  /// Text of exactly `num_tokens` tokens (for a real tokenizer: exact unless the tokenizer merges across
  /// spaces, which the builder corrects by adding or dropping words). Starts without a leading space.
  std::string build(int num_tokens, std::mt19937_64& rng) const;
  /// Client-side token count of arbitrary text (no BOS/EOS, no chat template).
  int count_tokens(std::string_view text) const { return count_(text); }
  /// "smollm2-135m tokenizer" or "whitespace words", for reports.
  const std::string& description() const { return description_; }
  size_t num_words() const { return words_.size(); }

 private:
  PromptBuilder(std::vector<std::string> words, std::function<int(std::string_view)> count, std::string description)
      : words_(std::move(words)), count_(std::move(count)), description_(std::move(description)) {}

  std::vector<std::string> words_;  ///< without the leading space
  std::function<int(std::string_view)> count_;
  std::string description_;
};

/// Whitespace word count (what the fixture server and the fallback builder call a token).
int count_whitespace_words(std::string_view text);

}  // namespace tern::bench
