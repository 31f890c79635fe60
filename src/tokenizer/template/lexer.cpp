#include "tokenizer/template/lexer.h"

#include <charconv>

#include "tokenizer/template/unicode.h"

namespace tern::chat {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

int count_newlines(std::string_view text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

/// jinja2 normalises \r\n and \r to \n and, without keep_trailing_newline, drops one final newline.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

/// Python `str.rstrip()`: removes trailing Unicode whitespace.
std::string_view rstrip(std::string_view text) {
  size_t pos = 0;
  size_t keep = 0;
  while (pos < text.size()) {
    const char32_t c = unicode::next_code_point(text, pos);
    if (!unicode::is_space(c)) keep = pos;
  }
  return text.substr(0, keep);
}

/// Python's unicode-escape decoding, which jinja2 applies to string literals.
Result<std::string> unescape(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (i + 1 >= body.size()) return fail("\\ at end of string");
    const char e = body[++i];
    auto read_hex = [&](int digits) -> Result<char32_t> {
      if (i + static_cast<size_t>(digits) >= body.size()) {
        return fail("truncated \\{} escape", e);
      }
      char32_t value = 0;
      for (int k = 1; k <= digits; ++k) {
        const char h = body[i + static_cast<size_t>(k)];
        int digit = is_digit(h)              ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
        if (digit < 0) return fail("truncated \\{} escape", e);
        value = value * 16 + static_cast<char32_t>(digit);
      }
      i += static_cast<size_t>(digits);
      if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
        return fail("string escape yields U+{:04X}, which is not a valid character", static_cast<uint32_t>(value));
      }
      return value;
    };
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        auto value = read_hex(e == 'x' ? 2 : e == 'u' ? 4 : 8);
        if (!value) return std::unexpected(value.error());
        unicode::append_utf8(out, *value);
        break;
      }
      case 'N': return fail("\\N{{...}} escapes are not supported");
      default:
        if (e >= '0' && e <= '7') {
          char32_t value = static_cast<char32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
            value = value * 8 + static_cast<char32_t>(body[++i] - '0');
          }
          unicode::append_utf8(out, value);
        } else if (static_cast<unsigned char>(e) >= 0x80) {
          // Python would turn "\é" into the six characters "\xe9"; nobody means that.
          return fail("backslash before a non-ASCII character is not supported");
        } else {
          out.push_back('\\');  // Python keeps unknown escapes as written
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  Result<std::vector<Token>> run() {
    while (pos_ < src_.size()) {
      auto r = lex_root();
      if (!r) return std::unexpected(r.error());
    }
    push(TokenType::kEnd, "", line_);
    return std::move(tokens_);
  }

 private:
  template <class... Args>
  std::unexpected<Error> error(int line, fmt::format_string<Args...> format, Args&&... args) {
    return fail("chat template line {}: {}", line, fmt::format(format, std::forward<Args>(args)...));
  }

  void push(TokenType type, std::string text, int line) {
    Token token;
    token.type = type;
    token.text = std::move(text);
    token.line = line;
    tokens_.push_back(std::move(token));
  }

  bool at(size_t p, std::string_view s) const { return std::string_view(src_).substr(p, s.size()) == s; }

  /// Python regex `\s*` from `p`: the end of the whitespace run.
  size_t skip_spaces(size_t p) const {
    while (p < src_.size()) {
      size_t next = p;
      if (!unicode::is_space(unicode::next_code_point(src_, next))) break;
      p = next;
    }
    return p;
  }

  /// Emits the text before a tag, applying the tag's `-`/`+` sign or lstrip_blocks.
  void emit_text_before_tag(std::string_view text, char sign, bool is_variable) {
    std::string_view kept = text;
    if (sign == '-') {
      kept = rstrip(text);
    } else if (sign != '+' && !is_variable) {
      // lstrip_blocks: drop the indentation before a block or comment tag when only whitespace separates
      // it from the start of its line.
      const size_t line_start = text.rfind('\n') == std::string_view::npos ? 0 : text.rfind('\n') + 1;
      if (line_start > 0 || line_starting_) {
        std::string_view tail = text.substr(line_start);
        if (!tail.empty() && rstrip(tail).empty()) kept = text.substr(0, line_start);
      }
    }
    if (!kept.empty()) push(TokenType::kText, std::string(kept), line_);
    line_ += count_newlines(text);
  }

  /// The end of `{%(-|+|)\s*raw\s*(-%}\s*|%})` at `p`, or npos.
  size_t match_raw_begin(size_t p) const {
    if (!at(p, "{%")) return std::string::npos;
    p += 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_spaces(p);
    if (!at(p, "raw")) return std::string::npos;
    p = skip_spaces(p + 3);
    if (at(p, "-%}")) return skip_spaces(p + 3);
    if (at(p, "%}")) return p + 2;
    return std::string::npos;
  }

  Result<void> lex_root() {
    size_t tag = src_.find('{', pos_);
    while (tag != std::string::npos && tag + 1 < src_.size() && src_[tag + 1] != '%' && src_[tag + 1] != '{' &&
           src_[tag + 1] != '#') {
      tag = src_.find('{', tag + 1);
    }
    if (tag == std::string::npos || tag + 1 >= src_.size()) {
      std::string_view rest = std::string_view(src_).substr(pos_);
      if (!rest.empty()) push(TokenType::kText, std::string(rest), line_);
      line_ += count_newlines(rest);
      pos_ = src_.size();
      return {};
    }
    const char kind = src_[tag + 1];
    const char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : '\0';
    const std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
    emit_text_before_tag(text, sign, kind == '{');
    const size_t after_opener = tag + 2 + (sign != '\0');

    if (kind == '%') {
      const size_t raw_end = match_raw_begin(tag);
      if (raw_end != std::string::npos) return lex_raw(tag, raw_end);
    }
    if (kind == '#') return lex_comment(after_opener);
    push(kind == '{' ? TokenType::kVariableBegin : TokenType::kBlockBegin, kind == '{' ? "{{" : "{%", line_);
    pos_ = after_opener;
    line_starting_ = false;
    return lex_tag(kind == '{');
  }

  Result<void> lex_comment(size_t content_start) {
    const int start_line = line_;
    size_t close = src_.find("#}", content_start);
    if (close == std::string::npos) return error(start_line, "missing end of comment tag");
    size_t end = close + 2;
    if (close > content_start && src_[close - 1] == '-') {
      end = skip_spaces(end);
    } else if (!(close > content_start && src_[close - 1] == '+')) {
      if (end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
    }
    line_ += count_newlines(std::string_view(src_).substr(content_start, end - content_start));
    line_starting_ = src_[end - 1] == '\n';
    pos_ = end;
    return {};
  }

  Result<void> lex_raw(size_t tag, size_t body_start) {
    const int start_line = line_;
    line_ += count_newlines(std::string_view(src_).substr(tag, body_start - tag));
    // The body runs to the first `{%(-|+|)\s*endraw\s*(+%}|-%}\s*|%}\n?)`.
    size_t search = body_start;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos) return error(start_line, "missing end of raw directive");
      size_t p = open + 2;
      const char sign = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : '\0';
      if (sign != '\0') ++p;
      p = skip_spaces(p);
      if (!at(p, "endraw")) {
        search = open + 2;
        continue;
      }
      p = skip_spaces(p + 6);
      size_t end;
      if (at(p, "+%}")) {
        end = p + 3;
      } else if (at(p, "-%}")) {
        end = skip_spaces(p + 3);
      } else if (at(p, "%}")) {
        end = p + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      } else {
        search = open + 2;
        continue;
      }
      line_starting_ = src_[body_start - 1] == '\n';
      emit_text_before_tag(std::string_view(src_).substr(body_start, open - body_start), sign, false);
      line_ += count_newlines(std::string_view(src_).substr(open, end - open));
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return {};
    }
  }

  /// Tokens inside {{ }} or {% %}, up to and including the closing tag.
  Result<void> lex_tag(bool is_variable) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) return {};  // unclosed tag: the parser reports the unexpected end
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (is_variable) {
          if (at(pos_, "-}}"))
            end = skip_spaces(pos_ + 3);
          else if (at(pos_, "}}"))
            end = pos_ + 2;
        } else {
          if (at(pos_, "+%}")) {
            end = pos_ + 3;
          } else if (at(pos_, "-%}")) {
            end = skip_spaces(pos_ + 3);
          } else if (at(pos_, "%}")) {
            end = pos_ + 2;
            if (end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
          }
        }
        if (end != std::string::npos) {
          push(is_variable ? TokenType::kVariableEnd : TokenType::kBlockEnd, "", line_);
          line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return {};
        }
      }
      const size_t space_end = skip_spaces(pos_);
      if (space_end > pos_) {
        line_ += count_newlines(std::string_view(src_).substr(pos_, space_end - pos_));
        pos_ = space_end;
        continue;
      }
      auto r = lex_expression_token(balance);
      if (!r) return r;
    }
  }

  /// `(\d+_)*\d+` at `p`: the end, or `p` when there is no digit.
  size_t digits_end(size_t p) const {
    size_t q = p;
    while (q < src_.size() && is_digit(src_[q])) {
      ++q;
      if (q + 1 < src_.size() && src_[q] == '_' && is_digit(src_[q + 1])) ++q;
    }
    return q;
  }

  /// jinja2's float_re at `pos_`: the end, or npos.
  size_t match_float() const {
    if (pos_ > 0 && src_[pos_ - 1] == '.') return std::string::npos;
    size_t p = digits_end(pos_);
    if (p == pos_) return std::string::npos;
    bool has_fraction = false;
    if (p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
      p = digits_end(p + 1);
      has_fraction = true;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      const size_t exp_end = digits_end(q);
      if (exp_end > q) return exp_end;
    }
    return has_fraction ? p : std::string::npos;
  }

  Result<void> lex_expression_token(std::vector<char>& balance) {
    const char c = src_[pos_];
    const int line = line_;
    if (const size_t end = match_float(); end != std::string::npos) {
      std::string text;
      for (size_t i = pos_; i < end; ++i) {
        if (src_[i] != '_') text.push_back(src_[i]);
      }
      Token token;
      token.type = TokenType::kFloat;
      token.line = line;
      std::from_chars(text.data(), text.data() + text.size(), token.float_value);
      token.text = std::move(text);
      tokens_.push_back(std::move(token));
      pos_ = end;
      return {};
    }
    if (is_digit(c)) return lex_integer();
    if (is_name_start(c)) {
      size_t end = pos_;
      while (end < src_.size() && is_name_char(src_[end])) ++end;
      push(TokenType::kName, src_.substr(pos_, end - pos_), line);
      pos_ = end;
      return {};
    }
    if (c == '\'' || c == '"') {
      size_t p = pos_ + 1;
      while (p < src_.size() && src_[p] != c) p += src_[p] == '\\' ? 2 : 1;
      if (p >= src_.size())
        return error(line, "unexpected char {} (unterminated string)", c == '\'' ? "\"'\"" : "'\"'");
      const std::string_view body = std::string_view(src_).substr(pos_ + 1, p - pos_ - 1);
      auto value = unescape(body);
      if (!value) return error(line, "{}", value.error().message);
      push(TokenType::kString, std::move(*value), line);
      line_ += count_newlines(body);
      pos_ = p + 1;
      return {};
    }
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwoChar) {
      if (at(pos_, op)) {
        push(TokenType::kOperator, std::string(op), line);
        pos_ += 2;
        return {};
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) != std::string_view::npos) {
      if (c == '{' || c == '(' || c == '[') {
        balance.push_back(c == '{' ? '}' : c == '(' ? ')' : ']');
      } else if (c == '}' || c == ')' || c == ']') {
        if (balance.empty()) return error(line, "unexpected '{}'", c);
        if (balance.back() != c) return error(line, "unexpected '{}', expected '{}'", c, balance.back());
        balance.pop_back();
      }
      push(TokenType::kOperator, std::string(1, c), line);
      ++pos_;
      return {};
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      size_t p = pos_;
      const char32_t cp = unicode::next_code_point(src_, p);
      return error(line, "unexpected char U+{:04X} (non-ASCII names are not supported)", static_cast<uint32_t>(cp));
    }
    return error(line, "unexpected char '{}'", c);
  }

  Result<void> lex_integer() {
    const int line = line_;
    int base = 10;
    size_t p = pos_;
    std::string digits;
    auto is_base_digit = [&](char ch) {
      if (base == 2) return ch == '0' || ch == '1';
      if (base == 8) return ch >= '0' && ch <= '7';
      if (base == 16) return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
      return is_digit(ch);
    };
    if (src_[p] == '0' && p + 1 < src_.size() &&
        std::string_view("bBoOxX").find(src_[p + 1]) != std::string_view::npos) {
      const char prefix = static_cast<char>(src_[p + 1] | 0x20);
      base = prefix == 'b' ? 2 : prefix == 'o' ? 8 : 16;
      p += 2;
      while (p < src_.size()) {
        if (src_[p] == '_' && p + 1 < src_.size() && is_base_digit(src_[p + 1])) ++p;
        if (!is_base_digit(src_[p])) break;
        digits.push_back(src_[p++]);
      }
      if (digits.empty()) return error(line, "invalid integer literal");
    } else if (src_[p] == '0') {
      // `0(_?0)*`: a leading zero only continues with zeros, as in Python.
      digits = "0";
      ++p;
      while (p < src_.size() && (src_[p] == '0' || (src_[p] == '_' && p + 1 < src_.size() && src_[p + 1] == '0'))) {
        if (src_[p] == '0') digits.push_back('0');
        ++p;
      }
    } else {
      while (p < src_.size()) {
        if (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1])) ++p;
        if (!is_digit(src_[p])) break;
        digits.push_back(src_[p++]);
      }
    }
    Token token;
    token.type = TokenType::kInteger;
    token.line = line;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), token.int_value, base);
    if (ec != std::errc()) return error(line, "integer literal {} does not fit in 64 bits", digits);
    token.text = src_.substr(pos_, p - pos_);
    tokens_.push_back(std::move(token));
    pos_ = p;
    return {};
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;  // the previous match ended with a newline (or nothing came before)
  std::vector<Token> tokens_;
};

}  // namespace

Result<std::vector<Token>> tokenize(std::string_view source) {
  if (!unicode::is_valid_utf8(source)) return fail("chat template is not valid UTF-8");
  return Lexer(normalize_newlines(source)).run();
}

}  // namespace tern::chat
