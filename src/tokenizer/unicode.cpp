#include "tokenizer/unicode.h"

namespace tern::tok {

size_t valid_utf8_prefix_length(std::string_view text) {
  if (text.empty()) return 0;
  const auto lead = static_cast<uint8_t>(text[0]);
  const size_t length = utf8_sequence_length(lead);
  if (length == 1) return lead < 0x80 ? 1 : 0;
  if (text.size() < length) return 0;
  uint32_t codepoint = lead & (0xFF >> (length + 1));
  for (size_t i = 1; i < length; ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    if ((byte & 0xC0) != 0x80) return 0;
    codepoint = (codepoint << 6) | (byte & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  static constexpr uint32_t kMinimum[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (codepoint < kMinimum[length] || codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF)) return 0;
  return length;
}

uint32_t next_codepoint(std::string_view text, size_t* pos) {
  const size_t length = valid_utf8_prefix_length(text.substr(*pos));
  if (length == 0) {
    *pos += 1;
    return 0xFFFD;
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data() + *pos);
  uint32_t codepoint = length == 1 ? bytes[0] : bytes[0] & (0xFF >> (length + 1));
  for (size_t i = 1; i < length; ++i) codepoint = (codepoint << 6) | (bytes[i] & 0x3F);
  *pos += length;
  return codepoint;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t length = valid_utf8_prefix_length(text.substr(pos));
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      pos += 1;
    } else {
      out.append(text.substr(pos, length));
      pos += length;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t codepoint) {
  if (codepoint < 0x80) {
    out += static_cast<char>(codepoint);
  } else if (codepoint < 0x800) {
    out += static_cast<char>(0xC0 | (codepoint >> 6));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  } else if (codepoint < 0x10000) {
    out += static_cast<char>(0xE0 | (codepoint >> 12));
    out += static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (codepoint >> 18));
    out += static_cast<char>(0x80 | ((codepoint >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  }
}

ByteLevelMapping::ByteLevelMapping() {
  codepoint_to_byte_.fill(-1);
  auto is_printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  uint32_t next_free = 256;
  for (int byte = 0; byte < 256; ++byte) {
    const uint32_t codepoint = is_printable(byte) ? static_cast<uint32_t>(byte) : next_free++;
    append_utf8(byte_to_text_[byte], codepoint);
    codepoint_to_byte_[codepoint] = static_cast<int16_t>(byte);
  }
}

const ByteLevelMapping& ByteLevelMapping::instance() {
  static const ByteLevelMapping mapping;
  return mapping;
}

std::string ByteLevelMapping::encode_all(std::string_view text) const {
  std::string out;
  out.reserve(text.size() * 2);
  for (char c : text) out += byte_to_text_[static_cast<uint8_t>(c)];
  return out;
}

}  // namespace tern::tok
