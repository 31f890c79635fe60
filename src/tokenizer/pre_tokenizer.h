#pragma once
// Splits text into words before byte-level BPE, with the regular expressions each model family was
// trained with (chosen by tokenizer.ggml.pre). The expressions are applied in sequence: each one
// splits every piece left by the previous one into its matches and the text between them.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace tern::tok {

class PreTokenizer {
 public:
  /// The split rules for a tokenizer.ggml.pre value; an error for an unknown one.
  static Result<PreTokenizer> for_model(std::string_view pre);
  /// Rules from explicit PCRE2 patterns (for tests and new families).
  static Result<PreTokenizer> from_patterns(const std::vector<std::string>& patterns);

  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  /// Splits valid UTF-8 `text` into consecutive pieces that concatenate back to it.
  std::vector<std::string_view> split(std::string_view text) const;

  /// Whether BPE should take a whole word that is itself a token without merging (Llama 3).
  bool ignore_merges() const { return ignore_merges_; }

 private:
  struct Compiled;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Compiled>> patterns_;
  bool ignore_merges_ = false;
};

/// The tokenizer.ggml.pre values tern knows, for error messages and docs.
std::string known_pre_tokenizers();

}  // namespace tern::tok
