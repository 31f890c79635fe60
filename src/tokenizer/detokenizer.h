#pragma once
// Streams text as tokens arrive without ever emitting broken UTF-8: a token may end in the middle
// of a character (byte-fallback tokens, byte-level BPE), so its trailing bytes wait for the next
// token. Bytes that can never become valid UTF-8 are emitted as U+FFFD rather than held forever.

#include <string>

#include "tokenizer/tokenizer.h"

namespace tern::tok {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(&tokenizer), render_special_(render_special) {}

  /// Adds a token; returns the text that became complete (possibly empty).
  std::string push(TokenId id);
  /// Ends the stream: whatever is still pending, with incomplete characters as U+FFFD.
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  std::string pending_;
};

/// Splits `bytes` into the longest prefix safe to emit now (valid UTF-8, invalid bytes replaced by
/// U+FFFD) and leaves in `bytes` only an incomplete character at the very end.
std::string take_complete_utf8(std::string& bytes);

}  // namespace tern::tok
