// Prompts built with a real model's tokenizer have exactly the asked-for number of tokens, and a prefix
// followed by a suffix costs the sum of both (the property shared-prefix workloads rely on).

#include <gtest/gtest.h>

#include "bench/prompt_builder.h"
#include "gguf/gguf_file.h"
#include "test_support.h"

namespace tern::bench {
namespace {

void check_exact_lengths(const std::string& path) {
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file) << file.error().message;
  auto tokenizer = tok::Tokenizer::from_gguf(*file);
  ASSERT_TRUE(tokenizer) << tokenizer.error().message;
  auto builder = PromptBuilder::from_tokenizer(std::make_shared<const tok::Tokenizer>(std::move(*tokenizer)));
  ASSERT_TRUE(builder) << builder.error().message;
  EXPECT_GE(builder->num_words(), 1000u);
  std::mt19937_64 rng(5);
  for (int length : {1, 2, 7, 64, 333, 2000}) {
    for (int sample = 0; sample < 5; ++sample) {
      const std::string text = builder->build(length, rng);
      EXPECT_EQ(builder->count_tokens(text), length) << "'" << text.substr(0, 80) << "'";
    }
  }
  for (int sample = 0; sample < 20; ++sample) {
    const std::string prefix = builder->build(100, rng), suffix = builder->build(50, rng);
    EXPECT_EQ(builder->count_tokens(prefix + " " + suffix), 150);
  }
}

TEST(PromptBuilder, ExactLengthsWithSmolLm2) {
  TERN_REQUIRE_MODEL(path, "smollm2-135m");
  check_exact_lengths(path);
}

TEST(PromptBuilder, ExactLengthsWithGemma3) {
  TERN_REQUIRE_MODEL(path, "gemma3-270m");
  check_exact_lengths(path);
}

TEST(PromptBuilder, WhitespaceWordsAreOneTokenEach) {
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  std::mt19937_64 rng(1);
  EXPECT_EQ(count_whitespace_words(builder.build(123, rng)), 123);
}

}  // namespace
}  // namespace tern::bench
