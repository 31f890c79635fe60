#pragma once
// The slice of Python's `str` behaviour that chat templates reach: code-point indexing, whitespace,
// printability (for repr) and case mapping. Python strings are sequences of code points while ours are
// UTF-8 bytes, so every operation whose result depends on "characters" goes through here.
//
// Case mapping covers the scripts whose tables are small enough to carry exactly (ASCII, Latin-1,
// Latin Extended-A, Latin Extended Additional, basic Greek, Cyrillic, fullwidth Latin). A code point in
// another block that has case in Unicode makes the operation fail rather than return text that would
// differ from Python's.

#include <string>
#include <string_view>

#include "util/result.h"

namespace tern::chat::unicode {

/// True when `text` is well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view text);

/// Decodes the code point starting at byte `pos` and advances `pos` past it. `text` must be valid UTF-8.
char32_t next_code_point(std::string_view text, size_t& pos);

/// Appends the UTF-8 encoding of `code_point`.
void append_utf8(std::string& out, char32_t code_point);

/// Splits valid UTF-8 into code points.
std::u32string to_code_points(std::string_view text);

/// Joins code points back into UTF-8.
std::string to_utf8(std::u32string_view code_points);

/// Number of code points (Python `len(str)`).
size_t length(std::string_view text);

/// True when every byte is ASCII, so byte offsets are code-point offsets.
bool is_ascii(std::string_view text);

/// Python `str.isspace()` for one code point; also what `\s` matches in Python's `re`.
bool is_space(char32_t code_point);

/// Line boundaries of Python `str.splitlines()` (\n, \r, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029).
bool is_line_break(char32_t code_point);

/// Python `str.isprintable()` for one code point; decides which characters `repr()` escapes.
/// Unassigned code points count as printable (Python escapes them); see docs/chat-templates.md.
bool is_printable(char32_t code_point);

/// Python `str.upper()`, `str.lower()`, `str.title()`, `str.capitalize()`, `str.swapcase()`.
Result<std::string> to_upper(std::string_view text);
Result<std::string> to_lower(std::string_view text);
Result<std::string> to_title(std::string_view text);
Result<std::string> capitalize(std::string_view text);
Result<std::string> swap_case(std::string_view text);

/// Python `str.islower()` / `str.isupper()`.
Result<bool> is_lower(std::string_view text);
Result<bool> is_upper(std::string_view text);

}  // namespace tern::chat::unicode
