#include "tokenizer/template/py_str.h"

#include <algorithm>
#include <cstdint>

#include "tokenizer/template/unicode.h"

namespace tern::chat::py_str {

namespace {

bool in_set(char32_t c, const std::u32string* chars) {
  if (chars == nullptr) return unicode::is_space(c);
  return chars->find(c) != std::u32string::npos;
}

/// Byte offset of each character start, plus the end: offsets[i] is where character i begins.
std::vector<size_t> char_offsets(std::string_view text) {
  std::vector<size_t> offsets;
  offsets.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) offsets.push_back(i);
  }
  offsets.push_back(text.size());
  return offsets;
}

int64_t char_index_of_byte(std::string_view text, size_t byte_offset) {
  return static_cast<int64_t>(unicode::length(text.substr(0, byte_offset)));
}

/// Whitespace split, left to right (CPython's stringlib split_whitespace).
std::vector<std::string> split_whitespace(std::string_view text, int64_t maxsplit) {
  std::vector<std::string> out;
  const std::u32string cps = unicode::to_code_points(text);
  const std::u32string_view view(cps);
  const size_t n = cps.size();
  int64_t remaining = maxsplit < 0 ? INT64_MAX : maxsplit;
  size_t i = 0;
  while (remaining-- > 0) {
    while (i < n && unicode::is_space(cps[i])) ++i;
    if (i == n) break;
    const size_t j = i++;
    while (i < n && !unicode::is_space(cps[i])) ++i;
    out.push_back(unicode::to_utf8(view.substr(j, i - j)));
  }
  while (i < n && unicode::is_space(cps[i])) ++i;
  if (i < n) out.push_back(unicode::to_utf8(view.substr(i)));
  return out;
}

std::vector<std::string> rsplit_whitespace(std::string_view text, int64_t maxsplit) {
  std::vector<std::string> out;
  const std::u32string cps = unicode::to_code_points(text);
  size_t i = cps.size();
  while (true) {
    while (i > 0 && unicode::is_space(cps[i - 1])) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      out.push_back(unicode::to_utf8(std::u32string_view(cps).substr(0, i)));
      break;
    }
    size_t j = i;
    while (j > 0 && !unicode::is_space(cps[j - 1])) --j;
    out.push_back(unicode::to_utf8(std::u32string_view(cps).substr(j, i - j)));
    i = j;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace

std::string strip(std::string_view text, const std::u32string* chars, bool left, bool right) {
  const std::u32string cps = unicode::to_code_points(text);
  size_t begin = 0;
  size_t end = cps.size();
  if (left) {
    while (begin < end && in_set(cps[begin], chars)) ++begin;
  }
  if (right) {
    while (end > begin && in_set(cps[end - 1], chars)) --end;
  }
  return unicode::to_utf8(std::u32string_view(cps).substr(begin, end - begin));
}

std::vector<std::string> split(std::string_view text, std::optional<std::string_view> sep, int64_t maxsplit) {
  if (!sep) {
    return split_whitespace(text, maxsplit);
  }
  std::vector<std::string> out;
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    const size_t hit = text.find(*sep, start);
    if (hit == std::string_view::npos) break;
    out.emplace_back(text.substr(start, hit - start));
    start = hit + sep->size();
  }
  out.emplace_back(text.substr(start));
  return out;
}

std::vector<std::string> rsplit(std::string_view text, std::optional<std::string_view> sep, int64_t maxsplit) {
  if (!sep) return rsplit_whitespace(text, maxsplit);
  std::vector<std::string> out;
  size_t end = text.size();
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    if (end < sep->size()) break;
    const size_t hit = text.rfind(*sep, end - sep->size());
    if (hit == std::string_view::npos) break;
    out.emplace_back(text.substr(hit + sep->size(), end - hit - sep->size()));
    end = hit;
  }
  out.emplace_back(text.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> splitlines(std::string_view text, bool keepends) {
  std::vector<std::string> out;
  size_t line_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t char_start = pos;
    const char32_t c = unicode::next_code_point(text, pos);
    if (!unicode::is_line_break(c)) continue;
    if (c == '\r' && pos < text.size() && text[pos] == '\n') ++pos;
    out.emplace_back(text.substr(line_start, (keepends ? pos : char_start) - line_start));
    line_start = pos;
  }
  if (line_start < text.size()) out.emplace_back(text.substr(line_start));
  return out;
}

std::string replace(std::string_view text, std::string_view old_text, std::string_view new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new` before every character and at the end, up to `count` times.
    const std::vector<size_t> offsets = char_offsets(text);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      out += text.substr(offsets[i], offsets[i + 1] - offsets[i]);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = text.find(old_text, start);
    if (hit == std::string_view::npos) break;
    out += text.substr(start, hit - start);
    out += new_text;
    start = hit + old_text.size();
    ++done;
  }
  out += text.substr(start);
  return out;
}

int64_t find(std::string_view text, std::string_view sub) {
  const size_t hit = text.find(sub);
  return hit == std::string_view::npos ? -1 : char_index_of_byte(text, hit);
}

int64_t rfind(std::string_view text, std::string_view sub) {
  const size_t hit = text.rfind(sub);
  return hit == std::string_view::npos ? -1 : char_index_of_byte(text, hit);
}

int64_t count(std::string_view text, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(unicode::length(text)) + 1;
  int64_t n = 0;
  for (size_t pos = text.find(sub); pos != std::string_view::npos; pos = text.find(sub, pos + sub.size())) ++n;
  return n;
}

std::string slice(std::string_view text, int64_t start, int64_t stop, int64_t step) {
  std::string out;
  if (unicode::is_ascii(text)) {
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(text[static_cast<size_t>(i)]);
    return out;
  }
  const std::vector<size_t> offsets = char_offsets(text);
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    const auto k = static_cast<size_t>(i);
    out += text.substr(offsets[k], offsets[k + 1] - offsets[k]);
  }
  return out;
}

std::string char_at(std::string_view text, int64_t index) { return slice(text, index, index + 1, 1); }

std::string pad(std::string_view text, int64_t width, char32_t fill, int alignment) {
  const auto length = static_cast<int64_t>(unicode::length(text));
  if (width <= length) return std::string(text);
  const int64_t margin = width - length;
  int64_t left = 0;
  if (alignment == 0) {
    left = margin / 2 + (margin & width & 1);  // CPython's rounding for center()
  } else if (alignment > 0) {
    left = margin;
  }
  std::string fill_text;
  unicode::append_utf8(fill_text, fill);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill_text;
  out += text;
  for (int64_t i = 0; i < margin - left; ++i) out += fill_text;
  return out;
}

}  // namespace tern::chat::py_str
