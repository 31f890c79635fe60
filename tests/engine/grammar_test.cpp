// Constrained decoding (engine/grammar over xgrammar): on a real model's vocabulary, the mask leaves
// only tokens that keep the output inside a JSON Schema, end tokens only once it is complete, and a
// schema that cannot be compiled is an error naming what it asks. (Every output validating against a
// corpus of schemas, through tern serve and the `jsonschema` package: tests/api/gateway_e2e_test.py.)

#include "engine/grammar/grammar.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "grammar_walk.h"
#include "test_support.h"

namespace tern::engine {
namespace {

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

TEST(SchemaCheck, AnObjectThatRequiresWhatItDoesNotAllowIsNamed) {
  using nlohmann::ordered_json;
  EXPECT_TRUE(check_schema_keepable(ordered_json::parse(R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
      "additionalProperties": false})")));
  EXPECT_TRUE(check_schema_keepable(ordered_json::parse(R"({"type": "object", "required": ["a"]})"))) << "other properties allowed";
  EXPECT_TRUE(check_schema_keepable(ordered_json::parse(R"({"enum": [{"required": ["x"], "additionalProperties": false}]})")))
      << "enum values are data, not schemas";
  auto nested = check_schema_keepable(ordered_json::parse(R"({"type": "object", "$defs": {"p": {"type": "object", "properties": {},
      "required": ["x"], "additionalProperties": false}}, "properties": {"q": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/p"}]}}})"));
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message.find("$defs.p: requires \"x\""), std::string::npos) << nested.error().message;
}

INSTANTIATE_TEST_SUITE_P(Models, GrammarTest, ::testing::Values("smollm2-135m", "gemma3-270m"),
                         [](const auto& info) { return info.param[0] == 's' ? std::string("smollm2") : std::string("gemma3"); });

}  // namespace
}  // namespace tern::engine
