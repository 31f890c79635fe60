#pragma once
// UTF-8 helpers and the byte <-> character mapping of byte-level BPE.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::tok {

/// Length of the UTF-8 sequence that starts with `lead` (1 for continuation or invalid bytes, so
/// callers always make progress).
inline size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

/// Number of bytes at the start of `text` that form a complete, valid UTF-8 sequence; 0 when the
/// first sequence is invalid, or incomplete at the end of `text`.
size_t valid_utf8_prefix_length(std::string_view text);

/// Replaces each invalid UTF-8 byte with U+FFFD, as llama.cpp does before pre-tokenizing.
std::string sanitize_utf8(std::string_view text);

/// Appends the UTF-8 encoding of `codepoint`.
void append_utf8(std::string& out, uint32_t codepoint);

/// Byte-level BPE represents each byte by a printable character: bytes that are printable Latin-1
/// map to themselves, the others to U+0100 and up (space -> 'Ġ', newline -> 'Ċ').
class ByteLevelMapping {
 public:
  static const ByteLevelMapping& instance();
  /// UTF-8 of the character standing for `byte`.
  const std::string& encode(uint8_t byte) const { return byte_to_text_[byte]; }
  /// The byte a character stands for, or -1 if it stands for none.
  int decode(uint32_t codepoint) const { return codepoint < 324 ? codepoint_to_byte_[codepoint] : -1; }
  /// Maps every byte of `text` to its character.
  std::string encode_all(std::string_view text) const;

 private:
  ByteLevelMapping();
  std::array<std::string, 256> byte_to_text_;
  std::array<int16_t, 324> codepoint_to_byte_;
};

/// Decodes one codepoint at `text[*pos]`, advancing pos; invalid bytes decode as U+FFFD.
uint32_t next_codepoint(std::string_view text, size_t* pos);

}  // namespace tern::tok
