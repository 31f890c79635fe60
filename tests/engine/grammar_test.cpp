// Constrained decoding (engine/grammar over xgrammar): on a real model's vocabulary, the mask leaves
// only tokens that keep the output inside a JSON Schema, end tokens only once it is complete, and a
// schema that cannot be compiled is an error naming what it asks. (Every output validating against a
// corpus of schemas, through tern serve and the `jsonschema` package: tests/api/gateway_e2e_test.py.)

#include "engine/grammar/grammar.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "gguf/gguf_file.h"
#include "test_support.h"

namespace tern::engine {
namespace {

struct Vocabulary {
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::vector<int32_t> end_tokens;
};

Vocabulary load(const std::string& path) {
  auto file = gguf::GgufFile::open(path);
  EXPECT_TRUE(file) << file.error().message;
  auto tokenizer = tok::Tokenizer::from_gguf(*file);
  EXPECT_TRUE(tokenizer) << tokenizer.error().message;
  Vocabulary out{std::make_unique<tok::Tokenizer>(std::move(*tokenizer)), {}};
  if (out.tokenizer->vocab().eos) out.end_tokens.push_back(*out.tokenizer->vocab().eos);
  return out;
}

/// Walks the grammar choosing at random among the tokens the mask leaves (an end token as soon as one
/// is allowed); returns the text, or nullopt if the walk did not end within `max_steps`.
std::optional<std::string> random_walk(TokenConstraint& constraint, const Vocabulary& v, uint32_t seed, int max_steps) {
  std::mt19937 rng(seed);
  std::vector<float> logits(v.tokenizer->vocab().size());
  std::string text;
  for (int step = 0; step < max_steps; ++step) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    EXPECT_TRUE(constraint.mask_logits(logits)) << "a dead end after " << text;
    std::vector<int32_t> allowed;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (std::isfinite(logits[i])) allowed.push_back(static_cast<int32_t>(i));
    }
    if (allowed.empty()) return std::nullopt;
    for (int32_t end : v.end_tokens) {
      if (std::find(allowed.begin(), allowed.end(), end) != allowed.end()) {
        EXPECT_TRUE(constraint.accept(end));
        return text;
      }
    }
    const int32_t token = allowed[rng() % allowed.size()];
    EXPECT_TRUE(constraint.accept(token));
    text += v.tokenizer->token_bytes(token);
  }
  return std::nullopt;
}

class GrammarTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GrammarTest, OutputsStayInsideTheSchemaAndEndOnlyWhenComplete) {
  TERN_REQUIRE_MODEL(path, GetParam());
  const Vocabulary v = load(path);
  GrammarCompiler compiler(*v.tokenizer, v.end_tokens);
  const std::string schema = R"({"type": "object", "properties": {"colour": {"enum": ["red", "green"]}, "count": {"type": "integer",
      "minimum": 1, "maximum": 9}, "tags": {"type": "array", "items": {"const": "t"}, "minItems": 1, "maxItems": 2}},
      "required": ["colour", "count", "tags"], "additionalProperties": false})";
  int ended = 0;
  for (uint32_t seed = 0; seed < 8; ++seed) {
    auto constraint = compiler.json_schema(schema);
    ASSERT_TRUE(constraint) << constraint.error().message;
    auto text = random_walk(**constraint, v, seed, 200);
    if (!text) continue;
    ++ended;
    const auto j = nlohmann::ordered_json::parse(*text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << *text;
    EXPECT_EQ(std::vector<std::string>({"colour", "count", "tags"}), (std::vector<std::string>{j.begin().key(), std::next(j.begin()).key(),
                                                                                              std::next(j.begin(), 2).key()}))
        << *text;
    EXPECT_TRUE(j["colour"] == "red" || j["colour"] == "green") << *text;
    EXPECT_TRUE(j["count"].is_number_integer() && j["count"] >= 1 && j["count"] <= 9) << *text;
    EXPECT_TRUE(j["tags"].size() >= 1 && j["tags"].size() <= 2) << *text;
  }
  EXPECT_EQ(ended, 8) << "every walk of this small language ends";
  // Before anything is written only an object may start: an end token is masked.
  auto fresh = compiler.json_schema(schema);
  ASSERT_TRUE(fresh);
  std::vector<float> logits(v.tokenizer->vocab().size(), 0.0f);
  ASSERT_TRUE((*fresh)->mask_logits(logits));
  for (int32_t end : v.end_tokens) EXPECT_TRUE(std::isinf(logits[static_cast<size_t>(end)]));
  EXPECT_FALSE((*fresh)->accept(v.end_tokens.front())) << "an end token before the object is refused";
}

TEST_P(GrammarTest, ASchemaThatCannotBeCompiledNamesWhatItAsks) {
  TERN_REQUIRE_MODEL(path, GetParam());
  const Vocabulary v = load(path);
  GrammarCompiler compiler(*v.tokenizer, v.end_tokens);
  auto bad = compiler.json_schema(R"({"type": "object", "properties": {"a": {"type": "wibble"}}})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("wibble"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(compiler.json_schema("{not json"));
}

INSTANTIATE_TEST_SUITE_P(Models, GrammarTest, ::testing::Values("smollm2-135m", "gemma3-270m"),
                         [](const auto& info) { return info.param[0] == 's' ? std::string("smollm2") : std::string("gemma3"); });

}  // namespace
}  // namespace tern::engine
