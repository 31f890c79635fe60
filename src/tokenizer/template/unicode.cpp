#include "tokenizer/template/unicode.h"

#include <array>

namespace tern::chat::unicode {

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t extra = 0;
    char32_t code_point = 0;
    if ((lead & 0xE0) == 0xC0) {
      extra = 1;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto byte = static_cast<unsigned char>(text[i + k]);
      if ((byte & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (byte & 0x3F);
    }
    static constexpr std::array<char32_t, 4> kMinimum = {0, 0x80, 0x800, 0x10000};
    if (code_point < kMinimum[extra] || code_point > 0x10FFFF) return false;
    if (code_point >= 0xD800 && code_point <= 0xDFFF) return false;
    i += extra + 1;
  }
  return true;
}

char32_t next_code_point(std::string_view text, size_t& pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  size_t extra = (lead & 0xE0) == 0xC0 ? 1 : (lead & 0xF0) == 0xE0 ? 2 : 3;
  char32_t code_point = lead & (extra == 1 ? 0x1F : extra == 2 ? 0x0F : 0x07);
  for (size_t k = 1; k <= extra && pos + k < text.size(); ++k) {
    code_point = (code_point << 6) | (static_cast<unsigned char>(text[pos + k]) & 0x3F);
  }
  pos += extra + 1;
  return code_point;
}

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

std::u32string to_code_points(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) out.push_back(next_code_point(text, pos));
  return out;
}

std::string to_utf8(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) append_utf8(out, c);
  return out;
}

size_t length(std::string_view text) {
  size_t count = 0;
  for (char c : text) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

bool is_ascii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 || c == 0x2028 ||
         c == 0x2029;
}

bool is_printable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0)) return false;  // Cc, and U+00A0 (Zs)
  if (is_space(c)) return false;                           // the other Zs, Zl, Zp
  // Cf (format characters), from Unicode 15's DerivedGeneralCategory.
  if (c == 0xAD || (c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x890 || c == 0x891 ||
      c == 0x8E2 || c == 0x180E || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
      (c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) ||
      c == 0x110BD || c == 0x110CD || (c >= 0x13430 && c <= 0x1343F) || (c >= 0x1BCA0 && c <= 0x1BCA3) ||
      (c >= 0x1D173 && c <= 0x1D17A) || c == 0xE0001 || (c >= 0xE0020 && c <= 0xE007F)) {
    return false;
  }
  if (c >= 0xD800 && c <= 0xDFFF) return false;                              // Cs
  if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000) return false;            // Co
  if ((c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE) return false;  // noncharacters
  return true;
}

namespace {

enum class Case { kUncased, kUpper, kLower };

/// The case of one code point and its simple (1:1) partner; `supported` is false for code points in
/// blocks with case that the tables here do not carry.
struct CaseInfo {
  Case kind = Case::kUncased;
  char32_t partner = 0;  // the other-case form, or 0 when there is none
  bool supported = true;
};

/// Blocks that contain cased letters outside the carried tables.
bool in_unsupported_cased_block(char32_t c) {
  return (c >= 0x180 && c <= 0x2FF) || c == 0x345 || (c >= 0x370 && c <= 0x385) || (c >= 0x3CF && c <= 0x3FF) ||
         (c >= 0x530 && c <= 0x58F) || (c >= 0x10A0 && c <= 0x10FF) || (c >= 0x13A0 && c <= 0x13FF) ||
         (c >= 0x1C80 && c <= 0x1CBF) || (c >= 0x1D00 && c <= 0x1DBF) || (c >= 0x1E96 && c <= 0x1E9F) ||
         (c >= 0x1F00 && c <= 0x1FFF) || (c >= 0x2090 && c <= 0x209C) || (c >= 0x2100 && c <= 0x218F) ||
         (c >= 0x24B6 && c <= 0x24E9) || (c >= 0x2C00 && c <= 0x2D2F) || (c >= 0xA640 && c <= 0xA69F) ||
         (c >= 0xA720 && c <= 0xA7FF) || (c >= 0xAB30 && c <= 0xABBF) || (c >= 0xFB00 && c <= 0xFB17) ||
         (c >= 0x10400 && c <= 0x104FF) || (c >= 0x10570 && c <= 0x105BF) || (c >= 0x10780 && c <= 0x107BF) ||
         (c >= 0x10C80 && c <= 0x10CFF) || (c >= 0x118A0 && c <= 0x118FF) || (c >= 0x16E40 && c <= 0x16E9F) ||
         (c >= 0x1D400 && c <= 0x1D7FF) || (c >= 0x1DF00 && c <= 0x1DFFF) || (c >= 0x1E030 && c <= 0x1E08F) ||
         (c >= 0x1E900 && c <= 0x1E95F) || (c >= 0x1F130 && c <= 0x1F189);
}

/// Pairs laid out as (upper, lower) alternating from `first` to `last`, upper on even offsets.
CaseInfo alternating(char32_t c, char32_t first) {
  return (c - first) % 2 == 0 ? CaseInfo{Case::kUpper, c + 1} : CaseInfo{Case::kLower, c - 1};
}

CaseInfo case_info(char32_t c) {
  if (c < 0x80) {
    if (c >= 'A' && c <= 'Z') return {Case::kUpper, c + 32};
    if (c >= 'a' && c <= 'z') return {Case::kLower, c - 32};
    return {};
  }
  if (c < 0x100) {
    if (c == 0xB5) return {Case::kLower, 0x39C};  // MICRO SIGN uppercases to GREEK CAPITAL MU
    if (c == 0xAA || c == 0xBA || c == 0xDF) return {Case::kLower, 0};
    if (c == 0xFF) return {Case::kLower, 0x178};
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return {Case::kUpper, c + 32};
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return {Case::kLower, c - 32};
    return {};
  }
  if (c < 0x180) {                               // Latin Extended-A
    if (c == 0x130) return {Case::kUpper, 'i'};  // lowercases to "i̇", see lower_full
    if (c == 0x131) return {Case::kLower, 'I'};
    if (c == 0x138) return {Case::kLower, 0};
    if (c == 0x149) return {Case::kLower, 0};  // uppercases to "ʼN", see upper_full
    if (c == 0x178) return {Case::kUpper, 0xFF};
    if (c == 0x17F) return {Case::kLower, 'S'};
    if (c <= 0x137) return alternating(c, 0x100);
    if (c <= 0x148) return alternating(c, 0x139);
    if (c <= 0x177) return alternating(c, 0x14A);
    if (c <= 0x17E) return alternating(c, 0x179);
    return {};
  }
  if (in_unsupported_cased_block(c)) return {Case::kUncased, 0, false};
  if (c >= 0x386 && c <= 0x3CE) {  // Greek
    if (c == 0x386) return {Case::kUpper, 0x3AC};
    if (c >= 0x388 && c <= 0x38A) return {Case::kUpper, c + 37};
    if (c == 0x38C) return {Case::kUpper, 0x3CC};
    if (c == 0x38E || c == 0x38F) return {Case::kUpper, c + 63};
    if (c == 0x390 || c == 0x3B0) return {Case::kLower, 0};  // three-code-point uppercase, see upper_full
    if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB)) return {Case::kUpper, c + 32};
    if (c == 0x3AC) return {Case::kLower, 0x386};
    if (c >= 0x3AD && c <= 0x3AF) return {Case::kLower, c - 37};
    if (c == 0x3C2) return {Case::kLower, 0x3A3};
    if ((c >= 0x3B1 && c <= 0x3C1) || (c >= 0x3C3 && c <= 0x3CB)) return {Case::kLower, c - 32};
    if (c == 0x3CC) return {Case::kLower, 0x38C};
    if (c == 0x3CD || c == 0x3CE) return {Case::kLower, c - 63};
    return {};
  }
  if (c >= 0x400 && c <= 0x52F) {  // Cyrillic and Cyrillic Supplement
    if (c <= 0x40F) return {Case::kUpper, c + 80};
    if (c <= 0x42F) return {Case::kUpper, c + 32};
    if (c <= 0x44F) return {Case::kLower, c - 32};
    if (c <= 0x45F) return {Case::kLower, c - 80};
    if (c <= 0x481) return alternating(c, 0x460);
    if (c <= 0x489) return {};
    if (c <= 0x4BF) return alternating(c, 0x48A);
    if (c == 0x4C0) return {Case::kUpper, 0x4CF};
    if (c <= 0x4CE) return (c - 0x4C1) % 2 == 0 ? CaseInfo{Case::kUpper, c + 1} : CaseInfo{Case::kLower, c - 1};
    if (c == 0x4CF) return {Case::kLower, 0x4C0};
    return alternating(c, 0x4D0);
  }
  if (c >= 0x1E00 && c <= 0x1EFF) {  // Latin Extended Additional (0x1E96-0x1E9F excluded above)
    if (c <= 0x1E95) return alternating(c, 0x1E00);
    return alternating(c, 0x1EA0);
  }
  if (c >= 0xFF21 && c <= 0xFF3A) return {Case::kUpper, c + 32};
  if (c >= 0xFF41 && c <= 0xFF5A) return {Case::kLower, c - 32};
  return {};
}

Result<CaseInfo> checked_case_info(char32_t c) {
  CaseInfo info = case_info(c);
  if (!info.supported) {
    return fail("case conversion of U+{:04X} is not supported (outside the carried Unicode case tables)",
                static_cast<uint32_t>(c));
  }
  return info;
}

void upper_full(std::string& out, char32_t c, const CaseInfo& info) {
  switch (c) {
    case 0xDF: out += "SS"; return;
    case 0x149: out += "\u02BCN"; return;
    case 0x390: out += "\u0399\u0308\u0301"; return;
    case 0x3B0: out += "\u03A5\u0308\u0301"; return;
    default: break;
  }
  append_utf8(out, info.kind == Case::kLower && info.partner != 0 ? info.partner : c);
}

void title_full(std::string& out, char32_t c, const CaseInfo& info) {
  if (c == 0xDF) {
    out += "Ss";
    return;
  }
  upper_full(out, c, info);
}

bool is_case_ignorable(char32_t c) {
  return c == '\'' || c == '.' || c == ':' || c == '^' || c == '`' || c == 0xAD || c == 0xB7 || c == 0x2019 ||
         (c >= 0x300 && c <= 0x36F);
}

bool is_cased(char32_t c) { return case_info(c).kind != Case::kUncased; }

/// Python lowercases CAPITAL SIGMA to the final form when it ends a word: preceded by a cased letter
/// and not followed by one (case-ignorable characters skipped on both sides).
bool is_final_sigma(const std::u32string& text, size_t index) {
  size_t i = index;
  bool cased_before = false;
  while (i > 0) {
    --i;
    if (is_case_ignorable(text[i])) continue;
    cased_before = is_cased(text[i]);
    break;
  }
  if (!cased_before) return false;
  for (size_t j = index + 1; j < text.size(); ++j) {
    if (is_case_ignorable(text[j])) continue;
    return !is_cased(text[j]);
  }
  return true;
}

void lower_full(std::string& out, const std::u32string& text, size_t index, const CaseInfo& info) {
  const char32_t c = text[index];
  if (c == 0x130) {
    out += "i\u0307";
    return;
  }
  if (c == 0x3A3) {
    append_utf8(out, is_final_sigma(text, index) ? 0x3C2 : 0x3C3);
    return;
  }
  append_utf8(out, info.kind == Case::kUpper ? info.partner : c);
}

enum class Mode { kUpper, kLower, kTitle, kCapitalize, kSwap };

Result<std::string> convert(std::string_view text, Mode mode) {
  const std::u32string code_points = to_code_points(text);
  std::string out;
  out.reserve(text.size());
  bool previous_is_cased = false;
  for (size_t i = 0; i < code_points.size(); ++i) {
    const char32_t c = code_points[i];
    auto info = checked_case_info(c);
    if (!info) return std::unexpected(info.error());
    bool to_upper_case = false;
    switch (mode) {
      case Mode::kUpper: to_upper_case = true; break;
      case Mode::kLower: to_upper_case = false; break;
      case Mode::kTitle: to_upper_case = !previous_is_cased; break;
      case Mode::kCapitalize: to_upper_case = i == 0; break;
      case Mode::kSwap: to_upper_case = info->kind == Case::kLower; break;
    }
    if (mode == Mode::kSwap && info->kind == Case::kUncased) {
      append_utf8(out, c);
    } else if (to_upper_case) {
      if (mode == Mode::kTitle || mode == Mode::kCapitalize) {
        title_full(out, c, *info);
      } else {
        upper_full(out, c, *info);
      }
    } else {
      lower_full(out, code_points, i, *info);
    }
    previous_is_cased = info->kind != Case::kUncased;
  }
  return out;
}

}  // namespace

Result<std::string> to_upper(std::string_view text) { return convert(text, Mode::kUpper); }
Result<std::string> to_lower(std::string_view text) { return convert(text, Mode::kLower); }
Result<std::string> to_title(std::string_view text) { return convert(text, Mode::kTitle); }
Result<std::string> capitalize(std::string_view text) { return convert(text, Mode::kCapitalize); }
Result<std::string> swap_case(std::string_view text) { return convert(text, Mode::kSwap); }

namespace {

Result<bool> all_cased_are(std::string_view text, Case wanted) {
  bool any_cased = false;
  size_t pos = 0;
  while (pos < text.size()) {
    auto info = checked_case_info(next_code_point(text, pos));
    if (!info) return std::unexpected(info.error());
    if (info->kind == Case::kUncased) continue;
    if (info->kind != wanted) return false;
    any_cased = true;
  }
  return any_cased;
}

}  // namespace

Result<bool> is_lower(std::string_view text) { return all_cased_are(text, Case::kLower); }
Result<bool> is_upper(std::string_view text) { return all_cased_are(text, Case::kUpper); }

}  // namespace tern::chat::unicode
