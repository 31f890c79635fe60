#pragma once
// Python `str` methods on UTF-8 text, character-indexed like Python: the string methods templates call
// (`text.strip()`, `text.split('</think>')`) and the filters built on them (`trim`, `replace`).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::chat::py_str {

/// `strip`/`lstrip`/`rstrip`: `chars` null strips Unicode whitespace, otherwise any of its characters.
std::string strip(std::string_view text, const std::u32string* chars, bool left, bool right);

/// `split(sep, maxsplit)`; `sep` unset splits on whitespace runs and drops empty pieces. `sep` must
/// not be empty (the caller reports Python's "empty separator").
std::vector<std::string> split(std::string_view text, std::optional<std::string_view> sep, int64_t maxsplit);
/// `rsplit(sep, maxsplit)`: like split, counting splits from the right.
std::vector<std::string> rsplit(std::string_view text, std::optional<std::string_view> sep, int64_t maxsplit);

/// `splitlines(keepends)` with Python's line boundaries.
std::vector<std::string> splitlines(std::string_view text, bool keepends);

/// `replace(old, new, count)`; count < 0 replaces all; an empty `old` inserts between characters.
std::string replace(std::string_view text, std::string_view old_text, std::string_view new_text, int64_t count);

/// `find`/`rfind`: the character index of `sub`, or -1.
int64_t find(std::string_view text, std::string_view sub);
int64_t rfind(std::string_view text, std::string_view sub);

/// `count(sub)`: non-overlapping occurrences (len + 1 for an empty `sub`).
int64_t count(std::string_view text, std::string_view sub);

/// `text[start:stop:step]` on characters; bounds already normalised by the caller.
std::string slice(std::string_view text, int64_t start, int64_t stop, int64_t step);

/// The character at index `index` (already normalised), as a string.
std::string char_at(std::string_view text, int64_t index);

/// Pads to `width` characters: `center`, `ljust`, `rjust` with a one-character fill.
std::string pad(std::string_view text, int64_t width, char32_t fill, int alignment /* -1 left, 0 center, 1 right */);

}  // namespace tern::chat::py_str
