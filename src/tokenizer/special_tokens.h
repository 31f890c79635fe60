#pragma once
// Splits text around special tokens written in it, before the text is tokenized.
//
// llama.cpp's rule, reproduced exactly: special tokens are tried one at a time, longest text first;
// each one splits every remaining raw-text fragment at all its (non-overlapping, left to right)
// occurrences. So for "bcd" > "ab", "abcd" splits as "a" + <bcd>, not <ab> + "cd".
//
// Scanning the text once per special token would cost O(#specials x length) (Gemma 3 has 6,400);
// instead a trie finds which special tokens occur anywhere, and only those are applied.

#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tern::tok {

/// A piece of text to tokenize, or an already-recognised token.
struct Fragment {
  bool is_token = false;
  TokenId token = -1;
  std::string_view text;
};

class SpecialTokenMatcher {
 public:
  explicit SpecialTokenMatcher(const Vocab& vocab);

  /// Splits `text`. Control and unknown tokens count only when `parse_special`; user-defined ones always.
  std::vector<Fragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, uint32_t>> children;  // sorted by byte
    TokenId token = -1;                                   // a special token ends here
  };
  uint32_t child(uint32_t node, uint8_t byte) const;

  const Vocab* vocab_;
  std::vector<TokenId> by_priority_;  // longest first, ties by id
  std::vector<uint32_t> rank_of_;     // token id -> position in by_priority_ (only for specials)
  std::vector<Node> trie_;
};

}  // namespace tern::tok
