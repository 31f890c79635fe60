// Tool-call grammars on real vocabularies: random walks through the grammar of each tool_choice mode
// always give calls the parser reads back with a tool's name and arguments that parse as JSON (the
// parameter schemas themselves are held by xgrammar, checked in grammar_test and the gateway e2e).

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "grammar_walk.h"
#include "test_support.h"
#include "tool_calls/format.h"
#include "tool_calls/grammar_spec.h"
#include "tool_calls/parser.h"

namespace tern::tool_calls {
namespace {

using nlohmann::ordered_json;
using Mode = wire::ToolChoice::Mode;

std::vector<wire::ToolDefinition> tools() {
  return {{.name = "get_weather", .description = {},
           .parameters = ordered_json::parse(R"({"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
               "days": {"type": "integer", "minimum": 1, "maximum": 3}}, "required": ["city", "days"], "additionalProperties": false})"),
           .strict = true},
          {.name = "get_time", .description = {},
           .parameters = ordered_json::parse(R"({"type": "object", "properties": {"zone": {"const": "UTC"}}, "required": ["zone"],
               "additionalProperties": false})"),
           .strict = true}};
}

Format format_of(const std::string& template_name) {
  std::ifstream in(std::string(TERN_TEST_DATA_DIR) + "/templates/" + template_name + ".jinja");
  std::stringstream text;
  text << in.rdbuf();
  return detect_format(text.str());
}

/// The calls a walk's output holds, read back by the parser; checks each names a tool and its
/// arguments are the schema's.
std::vector<wire::ToolCall> read_calls(const Format& format, const std::string& text, std::string& prose) {
  ToolCallParser parser(format);
  std::vector<wire::ToolCall> calls;
  auto a = parser.push(text);
  auto b = parser.finish();
  prose = a.text + b.text;
  wire::add_tool_call_deltas(calls, a.calls);
  wire::add_tool_call_deltas(calls, b.calls);
  for (const auto& call : calls) {
    const auto args = ordered_json::parse(call.arguments, nullptr, false);
    EXPECT_FALSE(args.is_discarded()) << call.arguments;
    if (call.name == "get_weather") {
      EXPECT_TRUE(args["city"] == "Paris" || args["city"] == "Rome") << call.arguments;
      EXPECT_TRUE(args["days"].is_number_integer() && args["days"] >= 1 && args["days"] <= 3) << call.arguments;
    } else {
      EXPECT_EQ("get_time", call.name);
      EXPECT_EQ("UTC", args["zone"]) << call.arguments;
    }
  }
  return calls;
}

class ToolGrammarTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ToolGrammarTest, ForcedCallsAreWholeCallsOfTheRightTools) {
  TERN_REQUIRE_MODEL(path, GetParam());
  const engine::Vocabulary v = engine::load(path);
  engine::GrammarCompiler compiler(*v.tokenizer, v.end_tokens);
  for (const char* template_name : {"qwen25", "llama31", "smollm2"}) {
    const Format format = format_of(template_name);
    for (const wire::ToolChoice& choice : {wire::ToolChoice{.mode = Mode::kRequired, .name = {}, .parallel = true},
                                           wire::ToolChoice{.mode = Mode::kRequired, .name = {}, .parallel = false},
                                           wire::ToolChoice{.mode = Mode::kNamed, .name = "get_time", .parallel = true}}) {
      int ended = 0;
      for (uint32_t seed = 0; seed < 6; ++seed) {
        auto constraint = compiler.structural_tag(structural_tag(format, tools(), choice));
        ASSERT_TRUE(constraint) << constraint.error().message;
        auto text = engine::random_walk(**constraint, v, seed, 120);
        if (!text) continue;
        ++ended;
        std::string prose;
        const auto calls = read_calls(format, *text, prose);
        EXPECT_EQ("", prose) << template_name << ": a forced call has no text around it: " << *text;
        ASSERT_GE(calls.size(), 1u) << *text;
        if (!choice.parallel || choice.mode == Mode::kNamed || !format.allows_parallel) {
          EXPECT_EQ(1u, calls.size()) << *text;
        }
        if (choice.mode == Mode::kNamed) {
          EXPECT_EQ("get_time", calls[0].name);
        }
      }
      EXPECT_GE(ended, 4) << template_name;
    }
  }
}

TEST_P(ToolGrammarTest, AutoAllowsTextAndHoldsACallOnceOpened) {
  TERN_REQUIRE_MODEL(path, GetParam());
  const engine::Vocabulary v = engine::load(path);
  engine::GrammarCompiler compiler(*v.tokenizer, v.end_tokens);
  const Format format = format_of("qwen25");
  const wire::ToolChoice choice{.mode = Mode::kAuto, .name = {}, .parallel = true};
  auto constraint = compiler.structural_tag(structural_tag(format, tools(), choice));
  ASSERT_TRUE(constraint) << constraint.error().message;
  // Free text first (an end token is allowed at once: the reply may be plain text).
  std::vector<float> logits(v.tokenizer->vocab().size(), 0.0f);
  ASSERT_TRUE((*constraint)->mask_logits(logits));
  for (int32_t end : v.end_tokens) EXPECT_TRUE(std::isfinite(logits[static_cast<size_t>(end)]));
  const std::string opening = "Checking.\n<tool_call>";
  for (int32_t token : v.tokenizer->encode(opening, {.add_special = false, .parse_special = false})) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    ASSERT_TRUE((*constraint)->mask_logits(logits));
    ASSERT_TRUE(std::isfinite(logits[static_cast<size_t>(token)])) << "token " << token << " of the opening is allowed";
    ASSERT_TRUE((*constraint)->accept(token));
  }
  // Once opened, a call must follow: no end token until it is complete.
  std::fill(logits.begin(), logits.end(), 0.0f);
  ASSERT_TRUE((*constraint)->mask_logits(logits));
  for (int32_t end : v.end_tokens) EXPECT_TRUE(std::isinf(logits[static_cast<size_t>(end)]));
  auto rest = engine::random_walk(**constraint, v, 7, 120);
  ASSERT_TRUE(rest);
  std::string prose;
  const auto calls = read_calls(format, opening + *rest, prose);
  // Free text may follow the call (a token can even straddle the call's end and the text after it).
  EXPECT_TRUE(prose.starts_with("Checking.")) << prose << " | " << *rest;
  EXPECT_EQ(1u, calls.size()) << *rest;
}

TEST_P(ToolGrammarTest, AToolSchemaThatCannotBeCompiledIsAnError) {
  TERN_REQUIRE_MODEL(path, GetParam());
  const engine::Vocabulary v = engine::load(path);
  engine::GrammarCompiler compiler(*v.tokenizer, v.end_tokens);
  auto bad = tools();
  bad[1].parameters = ordered_json::parse(R"({"type": "object", "properties": {"a": {"type": "wibble"}}})");
  EXPECT_FALSE(compiler.structural_tag(structural_tag(format_of("qwen25"), bad, {.mode = Mode::kAuto, .name = {}, .parallel = true})));
}

INSTANTIATE_TEST_SUITE_P(Models, ToolGrammarTest, ::testing::Values("smollm2-135m", "gemma3-270m"),
                         [](const auto& info) { return info.param[0] == 's' ? std::string("smollm2") : std::string("gemma3"); });

}  // namespace
}  // namespace tern::tool_calls
