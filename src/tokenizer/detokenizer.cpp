#include "tokenizer/detokenizer.h"

#include "tokenizer/unicode.h"

namespace tern::tok {
namespace {

// Whether `tail` (shorter than a full sequence) could still become a valid character.
bool is_incomplete_character(std::string_view tail) {
  const auto lead = static_cast<uint8_t>(tail[0]);
  const size_t needed = utf8_sequence_length(lead);
  if (needed == 1 || tail.size() >= needed) return false;
  for (size_t i = 1; i < tail.size(); ++i) {
    if ((static_cast<uint8_t>(tail[i]) & 0xC0) != 0x80) return false;
  }
  // Pad with the smallest continuation bytes that keep the prefix valid and check the result.
  std::string padded(tail);
  while (padded.size() < needed) padded += static_cast<char>(lead == 0xE0 ? 0xA0 : lead == 0xF0 ? 0x90 : 0x80);
  if (lead == 0xED && tail.size() >= 2 && static_cast<uint8_t>(tail[1]) >= 0xA0) return false;  // surrogate
  return valid_utf8_prefix_length(padded) == needed;
}

}  // namespace

std::string take_complete_utf8(std::string& bytes) {
  std::string out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const std::string_view rest(bytes.data() + pos, bytes.size() - pos);
    const size_t length = valid_utf8_prefix_length(rest);
    if (length > 0) {
      out.append(rest.substr(0, length));
      pos += length;
    } else if (is_incomplete_character(rest)) {
      break;
    } else {
      out += "\xEF\xBF\xBD";
      pos += 1;
    }
  }
  bytes.erase(0, pos);
  return out;
}

std::string IncrementalDetokenizer::push(TokenId id) {
  pending_ += tokenizer_->token_bytes(id, render_special_);
  return take_complete_utf8(pending_);
}

std::string IncrementalDetokenizer::flush() {
  std::string out = take_complete_utf8(pending_);
  for (size_t i = 0; i < pending_.size(); ++i) out += "\xEF\xBF\xBD";
  pending_.clear();
  return out;
}

}  // namespace tern::tok
