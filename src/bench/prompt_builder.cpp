#include "bench/prompt_builder.h"

#include <algorithm>

namespace tern::bench {

int count_whitespace_words(std::string_view text) {
  int count = 0;
  bool in_word = false;
  for (char c : text) {
    const bool is_space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!is_space && !in_word) ++count;
    in_word = !is_space;
  }
  return count;
}

Result<PromptBuilder> PromptBuilder::from_tokenizer(std::shared_ptr<const tok::Tokenizer> tokenizer) {
  constexpr size_t kMaxWords = 4096;
  tok::EncodeOptions options;
  options.add_special = false;
  std::vector<std::string> words;
  const size_t vocab_size = tokenizer->vocab().size();
  for (size_t id = 0; id < vocab_size && words.size() < kMaxWords; ++id) {
    const auto token_id = static_cast<tok::TokenId>(id);
    if (tokenizer->vocab().is_control(token_id)) continue;
    const std::string bytes = tokenizer->token_bytes(token_id);
    // Plain lower-case words of 3-9 letters after one space: common, safe in any template or JSON.
    if (bytes.size() < 4 || bytes.size() > 10 || bytes[0] != ' ') continue;
    if (!std::all_of(bytes.begin() + 1, bytes.end(), [](char c) { return c >= 'a' && c <= 'z'; })) continue;
    // One token both after a space and at the start of a text (a message's first word), so that token
    // counts add up however prompts are split into messages or joined with a prefix.
    const auto ids = tokenizer->encode(bytes, options);
    if (ids.size() != 1 || ids[0] != token_id) continue;
    if (tokenizer->encode(std::string_view(bytes).substr(1), options).size() != 1) continue;
    words.push_back(bytes.substr(1));
  }
  if (words.size() < 64) return fail("tokenizer has only {} single-token words; cannot build prompts", words.size());
  auto count = [tokenizer, options](std::string_view text) {
    return static_cast<int>(tokenizer->encode(text, options).size());
  };
  return PromptBuilder(std::move(words), count, fmt::format("model tokenizer ({} words)", vocab_size));
}

PromptBuilder PromptBuilder::whitespace_words() {
  // Pronounceable pseudo-words from syllables: enough distinct words that random prompts never collide.
  static const char* const kSyllables[] = {"ka", "lo", "mi", "ne", "ru", "ta", "vo", "pe", "si", "du", "ga", "fo"};
  std::vector<std::string> words;
  for (const char* first : kSyllables) {
    for (const char* second : kSyllables) {
      for (const char* third : kSyllables) words.push_back(std::string(first) + second + third);
    }
  }
  return PromptBuilder(std::move(words), count_whitespace_words, "whitespace words");
}

std::string PromptBuilder::build(int num_tokens, std::mt19937_64& rng) const {
  if (num_tokens <= 0) return {};
  std::uniform_int_distribution<size_t> pick(0, words_.size() - 1);
  std::vector<size_t> chosen;
  auto render = [&]() {
    std::string text;
    for (size_t index : chosen) {
      if (!text.empty()) text.push_back(' ');
      text += words_[index];
    }
    return text;
  };
  for (int i = 0; i < num_tokens; ++i) chosen.push_back(pick(rng));
  std::string text = render();
  // Every word is one token with or without a leading space, so the count is exact unless the tokenizer
  // merges across words; each pass then moves the count toward the target by the difference.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int count = count_(text);
    if (count == num_tokens) break;
    if (count > num_tokens) {
      const int excess = std::min<int>(count - num_tokens, static_cast<int>(chosen.size()) - 1);
      chosen.resize(chosen.size() - std::max(1, excess));
    } else {
      for (int i = 0; i < num_tokens - count; ++i) chosen.push_back(pick(rng));
    }
    text = render();
  }
  return text;
}

}  // namespace tern::bench
