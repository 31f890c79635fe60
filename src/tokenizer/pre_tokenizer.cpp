#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>

#include "tokenizer/unicode.h"

namespace tern::tok {
namespace {

constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr std::string_view kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Family {
  std::vector<std::string_view> names;
  std::vector<std::string_view> patterns;
  bool ignore_merges = false;
};

// The expressions per family, as llama.cpp uses them for the same GGUF metadata.
const std::vector<Family>& families() {
  static const std::vector<Family> all = {
      {{"default"}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"}, {kLlama3}, true},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", "grok-2"}, {kQwen2}},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"}, {R"(\p{N})", kGpt2}},
      {{"gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "roberta-bpe", "jina-es", "jina-de", "jina-v1-en",
        "jina-v2-es", "jina-v2-de", "jina-v2-code", "gigachat"},
       {kGpt2}},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}},
  };
  return all;
}

// llama.cpp counts U+0085 (NEL) as whitespace; PCRE2's \s does not. Rewrite \s and \S to agree.
std::string with_llama_whitespace(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (next == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    if (c == '[') in_class = true;
    if (c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

namespace {
// Match data is per call, not per pattern: a tokenizer is shared by the server's HTTP threads.
struct MatchData {
  pcre2_match_data* data;
  explicit MatchData(const pcre2_code* code) : data(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(data); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};
}  // namespace

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

Result<PreTokenizer> PreTokenizer::from_patterns(const std::vector<std::string>& patterns) {
  PreTokenizer pre;
  for (const std::string& source : patterns) {
    const std::string pattern = with_llama_whitespace(source);
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_unique<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (compiled->code == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error_code, message.data(), message.size());
      return fail("pre-tokenizer pattern '{}' at offset {}: {}", source, error_offset,
                  reinterpret_cast<const char*>(message.data()));
    }
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
    pre.patterns_.push_back(std::move(compiled));
  }
  return pre;
}

Result<PreTokenizer> PreTokenizer::for_model(std::string_view name) {
  for (const Family& family : families()) {
    for (std::string_view known : family.names) {
      if (known != name) continue;
      std::vector<std::string> patterns(family.patterns.begin(), family.patterns.end());
      auto pre = from_patterns(patterns);
      if (pre) pre->ignore_merges_ = family.ignore_merges;
      return pre;
    }
  }
  return fail("unknown pre-tokenizer '{}' (known: {})", name, known_pre_tokenizers());
}

std::string known_pre_tokenizers() {
  std::string out;
  for (const Family& family : families()) {
    for (std::string_view name : family.names) out += fmt::format("{}{}", out.empty() ? "" : ", ", name);
  }
  return out;
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (!text.empty()) pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& compiled : patterns_) {
    next.clear();
    const MatchData match(compiled->code);
    for (std::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t start = 0;  // first byte not yet emitted
      size_t offset = 0;
      while (offset < piece.size()) {
        const int rc = pcre2_match(compiled->code, subject, piece.size(), offset, PCRE2_NO_UTF_CHECK,
                                   match.data, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.data);
        const size_t match_begin = ovector[0];
        const size_t match_end = ovector[1];
        if (match_end == match_begin) {  // an empty match: step over one character
          offset = match_begin < piece.size() ? match_begin + utf8_sequence_length(static_cast<uint8_t>(piece[match_begin]))
                                                : piece.size();
          continue;
        }
        if (match_begin > start) next.push_back(piece.substr(start, match_begin - start));
        next.push_back(piece.substr(match_begin, match_end - match_begin));
        start = offset = match_end;
      }
      if (start < piece.size()) next.push_back(piece.substr(start));
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace tern::tok
