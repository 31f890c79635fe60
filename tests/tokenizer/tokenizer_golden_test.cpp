// Token ids against llama.cpp (goldens by tools/make_tokenizer_goldens.py), round trips and streaming
// detokenization, on both real models and on the Llama 3 / Qwen pre-tokenizers.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gguf/gguf_file.h"
#include "test_support.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace tern::tok {
namespace {

class TokenizerGolden : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::string path = testing::model_or_fixture_path(GetParam());
    if (!std::filesystem::exists(path)) GTEST_FAIL() << "model " << GetParam() << " missing: run scripts/test.sh";
    auto file = gguf::GgufFile::open(path);
    ASSERT_TRUE(file) << file.error().message;
    auto tokenizer = Tokenizer::from_gguf(*file);
    ASSERT_TRUE(tokenizer) << tokenizer.error().message;
    tokenizer_.emplace(std::move(*tokenizer));
    strings_ = nlohmann::json::parse(testing::read_text(testing::data_path("tokenizer/strings.json")));
    goldens_ = nlohmann::json::parse(testing::read_text(testing::data_path(std::string("tokenizer/") + GetParam() + ".json")));
  }
  std::optional<Tokenizer> tokenizer_;
  nlohmann::json strings_;
  nlohmann::json goldens_;
};

std::string show(const std::string& s) { return nlohmann::json(s).dump(); }

TEST_P(TokenizerGolden, IdsMatchLlamaCpp) {
  const auto& cases = goldens_.at("cases");
  ASSERT_EQ(cases.size(), strings_.size());
  ASSERT_GE(cases.size(), 300u);
  size_t mismatches = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string text = strings_[i];
    const auto plain = tokenizer_->encode(text, {.add_special = true, .parse_special = false});
    const auto special = tokenizer_->encode(text, {.add_special = false, .parse_special = true});
    const auto expected_plain = cases[i].at("plain").get<std::vector<TokenId>>();
    const auto expected_special = cases[i].at("special").get<std::vector<TokenId>>();
    if (plain != expected_plain) {
      ++mismatches;
      ADD_FAILURE() << "plain " << show(text) << "\n  tern:      " << nlohmann::json(plain).dump()
                    << "\n  llama.cpp: " << nlohmann::json(expected_plain).dump();
    }
    if (special != expected_special) {
      ++mismatches;
      ADD_FAILURE() << "special " << show(text) << "\n  tern:      " << nlohmann::json(special).dump()
                    << "\n  llama.cpp: " << nlohmann::json(expected_special).dump();
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST_P(TokenizerGolden, DecodeInvertsEncode) {
  for (const std::string text : strings_) {
    const auto plain = tokenizer_->encode(text, {.add_special = true, .parse_special = false});
    EXPECT_EQ(tokenizer_->decode(plain), text) << show(text);
    const auto special = tokenizer_->encode(text, {.add_special = false, .parse_special = true});
    EXPECT_EQ(tokenizer_->decode(special, /*render_special=*/true), text) << show(text);
  }
}

TEST_P(TokenizerGolden, StreamingNeverEmitsBrokenUtf8) {
  for (const std::string text : strings_) {
    const auto ids = tokenizer_->encode(text, {.add_special = false, .parse_special = false});
    IncrementalDetokenizer stream(*tokenizer_);
    std::string joined;
    for (TokenId id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_EQ(sanitize_utf8(piece), piece) << "broken UTF-8 emitted for " << show(text);
      joined += piece;
    }
    joined += stream.flush();
    EXPECT_EQ(joined, text);
  }
}

// The real models' vocabularies; and SmolLM2's first 512 tokens (byte-level BPE) under Llama 3's and
// Qwen's pre-tokenizer regexes (the random fixtures' "llama-bpe" and "qwen2"), which split text
// differently before the merges: digits one by one or in threes, contractions, punctuation runs.
INSTANTIATE_TEST_SUITE_P(RealModels, TokenizerGolden,
                         ::testing::Values("smollm2-135m", "gemma3-270m", "llama3-random", "qwen3-random"),
                         [](const auto& info) {
                           std::string s = info.param;
                           return s.ends_with("-random") ? s.substr(0, s.size() - 7) + "_pre" : s.substr(0, 6);
                         });

TEST(IncrementalDetokenizer, HoldsPartialCharactersAndReplacesInvalidBytes) {
  std::string bytes = "ok \xF0\x9F";
  EXPECT_EQ(take_complete_utf8(bytes), "ok ");
  EXPECT_EQ(bytes, "\xF0\x9F");
  bytes += "\x98\x80!";
  EXPECT_EQ(take_complete_utf8(bytes), "\xF0\x9F\x98\x80!");
  EXPECT_TRUE(bytes.empty());
  bytes = "\xFFx\xC3";
  EXPECT_EQ(take_complete_utf8(bytes), "\xEF\xBF\xBDx");
  EXPECT_EQ(bytes, "\xC3");
  bytes = "\xED\xA0";  // would be a surrogate: can never complete
  EXPECT_EQ(take_complete_utf8(bytes), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Unicode, SanitizeReplacesEachInvalidByte) {
  EXPECT_EQ(sanitize_utf8("a\x80" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
  EXPECT_EQ(sanitize_utf8("\xE2\x82\xAC"), "\xE2\x82\xAC");
}

TEST(PreTokenizer, SmolLmSplitsDigitsAndWords) {
  auto pre = PreTokenizer::for_model("smollm");
  ASSERT_TRUE(pre);
  const auto pieces = pre->split("Hello  world 123!!\n");
  std::vector<std::string> got(pieces.begin(), pieces.end());
  EXPECT_EQ(got, (std::vector<std::string>{"Hello", " ", " world", " ", "1", "2", "3", "!!", "\n"}));
  EXPECT_FALSE(PreTokenizer::for_model("no-such-family"));
}

TEST(PreTokenizer, Llama3AndQwen2PatternsCompile) {
  auto llama3 = PreTokenizer::for_model("llama-bpe");
  ASSERT_TRUE(llama3);
  EXPECT_TRUE(llama3->ignore_merges());
  const auto pieces = llama3->split("I'VE 12345 apples\n\n");
  std::vector<std::string> got(pieces.begin(), pieces.end());
  EXPECT_EQ(got, (std::vector<std::string>{"I", "'VE", " ", "123", "45", " apples", "\n\n"}));
  EXPECT_TRUE(PreTokenizer::for_model("qwen2"));
}

}  // namespace
}  // namespace tern::tok
