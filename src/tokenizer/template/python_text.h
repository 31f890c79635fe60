#pragma once
// Python's text forms of numbers and strings, byte for byte: `repr(float)`, `repr(str)`, and the string
// and number encoding of `json.dumps`. Every float a template prints or serialises goes through here.

#include <string>
#include <string_view>

namespace tern::chat {

/// Python `repr(x)` for a float: the shortest digits that round-trip, "1.0" not "1", exponent form
/// ("1e-05", "1e+16") below 1e-4 and from 1e16 up, "inf"/"nan".
std::string float_repr(double value);

/// Python `repr(s)`: single quotes unless the text has a ' and no ", escapes for \\, \n, \r, \t and
/// non-printable characters (\x.., \u...., \U........).
std::string string_repr(std::string_view text);

/// Appends `text` as a JSON string the way `json.dumps` writes it: \" \\ \n \r \t \b \f, \u00XX for
/// other control characters, and with `ensure_ascii` every non-ASCII character as \uXXXX (surrogate
/// pairs above U+FFFF).
void append_json_string(std::string& out, std::string_view text, bool ensure_ascii);

/// Python `json.dumps(float)`: `float_repr`, except "NaN", "Infinity", "-Infinity".
std::string json_float(double value);

}  // namespace tern::chat
