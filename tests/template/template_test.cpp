// Chat-template interpreter tests. The reference is Python jinja2 in Hugging Face's environment:
// tools/make_template_goldens.py rendered every fixture template over every conversation, and every
// feature snippet, into tests/data/templates/goldens.json. Outputs must match byte for byte; where
// jinja2 raised, we must fail too, and at run time with jinja2's message inside ours.

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/template/chat_template.h"

namespace tern::chat {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string templates_dir() { return std::string(TERN_TEST_DATA_DIR) + "/templates/"; }

/// goldens.json, read once; ordered_json keeps the key order the Python dicts had.
const nlohmann::ordered_json& goldens() {
  static const nlohmann::ordered_json data = [] {
    const std::string text = read_file(templates_dir() + "goldens.json");
    return text.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json::parse(text);
  }();
  return data;
}

RenderOptions fixed_clock() {
  RenderOptions options;
  options.now = std::chrono::sys_seconds(std::chrono::seconds(goldens().value("now_epoch_seconds", int64_t{0})));
  return options;
}

/// Parses and renders; the rendered text, or the error message.
Result<std::string> parse_and_render(const std::string& source, const nlohmann::ordered_json& context,
                                     const RenderOptions& options = fixed_clock()) {
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl) return std::unexpected(tmpl.error());
  return tmpl->render(context, options);
}

/// Compares one render with its golden entry ({"output": ...} or {"error": {...}}).
void expect_matches_golden(const Result<std::string>& actual, const nlohmann::ordered_json& golden) {
  if (golden.contains("output")) {
    ASSERT_TRUE(actual.has_value()) << "jinja2 rendered, we failed: " << actual.error().message;
    EXPECT_EQ(*actual, golden["output"].get<std::string>());
    return;
  }
  const auto& error = golden["error"];
  ASSERT_FALSE(actual.has_value()) << "jinja2 raised " << error["type"].get<std::string>() << " ("
                                   << error["message"].get<std::string>() << "), we rendered:\n"
                                   << *actual;
  // Parse errors are worded our way ("chat template line 3: ..."); run-time errors carry jinja2's
  // (and Python's) message, which is what a template's raise_exception text relies on.
  if (error["phase"] == "render") {
    EXPECT_NE(actual.error().message.find(error["message"].get<std::string>()), std::string::npos)
        << "ours: " << actual.error().message << "\njinja2: " << error["message"].get<std::string>();
  }
  EXPECT_TRUE(actual.error().message.starts_with("chat template")) << actual.error().message;
}

std::string test_name(std::string name) {
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

// ---- model templates x conversations ----

class ModelTemplate : public ::testing::TestWithParam<size_t> {};

TEST_P(ModelTemplate, MatchesJinja2) {
  const auto& golden = goldens()["cases"][GetParam()];
  const std::string name = golden["template"].get<std::string>();
  const auto& spec = goldens()["templates"][name];
  nlohmann::ordered_json context = goldens()["conversations"][golden["conversation"].get<std::string>()];
  for (const auto& [key, value] : spec["special_tokens"].items()) context[key] = value;
  const std::string source = read_file(templates_dir() + spec["file"].get<std::string>());
  ASSERT_FALSE(source.empty()) << "missing fixture " << spec["file"];
  expect_matches_golden(parse_and_render(source, context), golden);
}

std::vector<size_t> indices(const char* section) {
  std::vector<size_t> out;
  if (goldens().contains(section)) {
    for (size_t i = 0; i < goldens()[section].size(); ++i) out.push_back(i);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Goldens, ModelTemplate, ::testing::ValuesIn(indices("cases")),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           const auto& c = goldens()["cases"][info.param];
                           return test_name(c["template"].get<std::string>() + "__" +
                                            c["conversation"].get<std::string>());
                         });

// ---- interpreter snippets, one feature each ----

class Snippet : public ::testing::TestWithParam<size_t> {};

TEST_P(Snippet, MatchesJinja2) {
  const auto& golden = goldens()["snippets"][GetParam()];
  SCOPED_TRACE(golden["template"].get<std::string>());
  expect_matches_golden(parse_and_render(golden["template"].get<std::string>(), golden["context"]), golden);
}

INSTANTIATE_TEST_SUITE_P(Goldens, Snippet, ::testing::ValuesIn(indices("snippets")),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return test_name(goldens()["snippets"][info.param]["name"].get<std::string>());
                         });

TEST(Goldens, Present) {
  ASSERT_FALSE(goldens().is_null()) << "tests/data/templates/goldens.json is missing";
  EXPECT_GE(goldens()["cases"].size(), 100u);
  EXPECT_GE(goldens()["snippets"].size(), 100u);
}

// ---- errors only we raise: the unsupported subset, limits, API misuse ----

std::string parse_error(std::string_view source) {
  auto tmpl = ChatTemplate::parse(source);
  return tmpl ? std::string("(parsed)") : tmpl.error().message;
}

std::string render_error(std::string_view source,
                         const nlohmann::ordered_json& context = nlohmann::ordered_json::object(),
                         const RenderOptions& options = {}) {
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl) return "parse failed: " + tmpl.error().message;
  auto out = tmpl->render(context, options);
  return out ? std::string("(rendered)") : out.error().message;
}

TEST(ChatTemplateErrors, UnsupportedFilterNamesLine) {
  EXPECT_EQ(parse_error("a\nb\n{{ x|xmlattr }}"), "chat template line 3: unsupported filter 'xmlattr'");
  EXPECT_EQ(parse_error("{{ x|wordwrap(3) }}"), "chat template line 1: unsupported filter 'wordwrap'");
  EXPECT_EQ(parse_error("\n{{ x|nosuch }}"), "chat template line 2: unknown filter 'nosuch'");
}

TEST(ChatTemplateErrors, UnsupportedTagsNameLine) {
  EXPECT_EQ(parse_error("{% include 'x.jinja' %}"), "chat template line 1: unsupported tag 'include'");
  EXPECT_EQ(parse_error("x\n{% extends 'base' %}"), "chat template line 2: unsupported tag 'extends'");
  EXPECT_EQ(parse_error("\n\n{% generation %}x{% endgeneration %}"),
            "chat template line 3: unsupported tag 'generation'");
  EXPECT_EQ(parse_error("{% call m() %}{% endcall %}"), "chat template line 1: unsupported tag 'call'");
  EXPECT_EQ(parse_error("{% for x in y recursive %}{% endfor %}"),
            "chat template line 1: unsupported: recursive for loops");
  EXPECT_EQ(parse_error("{{ f(*args) }}"), "chat template line 1: unsupported: *args / **kwargs in calls");
  EXPECT_EQ(parse_error("{% macro m() %}\n{{ varargs }}{% endmacro %}"),
            "chat template line 1: unsupported: macro 'm' uses varargs, kwargs or caller");
}

TEST(ChatTemplateErrors, UnclosedBlocksNameTheOpeningLine) {
  EXPECT_EQ(parse_error("{% for m in messages %}\n{% if m %}\nx\n{% endif %}"),
            "chat template line 4: unexpected end of template: the 'for' block opened on line 1 is never closed");
  EXPECT_EQ(parse_error("ok\n{% if a %}{% endfor %}"),
            "chat template line 2: unexpected tag 'endfor' inside the 'if' block opened on line 2");
  EXPECT_EQ(parse_error("{{ 'abc }}"), "chat template line 1: unexpected char \"'\" (unterminated string)");
  EXPECT_EQ(parse_error("{# never closed"), "chat template line 1: missing end of comment tag");
}

TEST(ChatTemplateErrors, RuntimeErrorsNameTheLine) {
  EXPECT_EQ(render_error("line one\n{% if true %}\n  {{ raise_exception('Roles must alternate') }}\n{% endif %}"),
            "chat template line 3: Roles must alternate");
  EXPECT_EQ(render_error("\n\n\n{{ undefined_function(1) }}"),
            "chat template line 4: 'undefined_function' is undefined");
  EXPECT_EQ(render_error("{{ 1 +\n 'a' }}"),
            "chat template line 1: unsupported operand type(s) for +: 'int' and 'str'");
  EXPECT_EQ(render_error("{% macro m() %}\n{{ 1 // 0 }}\n{% endmacro %}\n{{ m() }}"),
            "chat template line 2: integer division or modulo by zero");
}

TEST(ChatTemplateErrors, UnsupportedRuntimeFeaturesFailLoudly) {
  EXPECT_EQ(render_error("{{ 'a'.partition('b') }}"), "chat template line 1: str.partition() is not supported");
  EXPECT_EQ(render_error("{% set j = joiner(', ') %}"), "chat template line 1: joiner() is not supported");
  EXPECT_EQ(
      render_error("{{ 'Ῥ'|lower }}"),
      "chat template line 1: case conversion of U+1FEC is not supported (outside the carried Unicode case tables)");
  EXPECT_EQ(
      render_error("{{ x|select('odd') }}", {{"x", {1}}}),
      "chat template line 1: printing a generator (the result of select/map/items/...) is not supported; add |list");
}

// 10^10 iterations would run for hours; the error proves the cap stopped them (a count, not a clock).
TEST(ChatTemplateLimits, IterationCapStopsNestedLoops) {
  const std::string message =
      render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  EXPECT_NE(message.find("loop iterations and macro calls (limit)"), std::string::npos) << message;
}

TEST(ChatTemplateLimits, OutputCap) {
  const std::string message = render_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
  EXPECT_NE(message.find("rendered output exceeds the 16777216-byte limit"), std::string::npos) << message;
}

TEST(ChatTemplateLimits, StringBuildingCap) {
  // Doubling a string: each step fits, the total and then the size do not.
  const std::string message =
      render_error("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}");
  EXPECT_NE(message.find("limit"), std::string::npos) << message;
  const std::string repeat = render_error("{{ 'x' * 100000000000 }}");
  EXPECT_NE(repeat.find("limit"), std::string::npos) << repeat;
}

TEST(ChatTemplateLimits, RecursionDepthCap) {
  const std::string message = render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(message.find("macro calls nested deeper than 64 (recursion limit)"), std::string::npos) << message;
  RenderOptions shallow;
  shallow.limits.max_call_depth = 3;
  EXPECT_EQ(render_error("{% macro f(n) %}{% if n < 10 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
                         nlohmann::ordered_json::object(), shallow),
            "chat template line 1: macro calls nested deeper than 3 (recursion limit)");
}

TEST(ChatTemplateLimits, DeepNestingIsAParseError) {
  const std::string source = "{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}";
  EXPECT_NE(parse_error(source).find("nested more than 200 levels deep"), std::string::npos);
  std::string nested_ifs;
  for (int i = 0; i < 500; ++i) nested_ifs += "{% if true %}";
  EXPECT_NE(parse_error(nested_ifs).find("nested more than 200 levels deep"), std::string::npos);
}

TEST(ChatTemplateApi, RejectsBadInput) {
  EXPECT_EQ(parse_error(std::string("{{ 'a' }}\xff")), "chat template is not valid UTF-8");
  auto tmpl = ChatTemplate::parse("{{ x }}");
  ASSERT_TRUE(tmpl.has_value());
  auto not_object = tmpl->render(nlohmann::ordered_json::array());
  ASSERT_FALSE(not_object.has_value());
  EXPECT_EQ(not_object.error().message, "chat template context must be a JSON object");
}

TEST(ChatTemplateApi, OrderedAndSortedJsonContexts) {
  auto tmpl = ChatTemplate::parse("{{ d|tojson }}|{% for k in d %}{{ k }}{% endfor %}");
  ASSERT_TRUE(tmpl.has_value());
  nlohmann::ordered_json ordered = {{"d", {{"z", 1}, {"a", 2}}}};
  EXPECT_EQ(*tmpl->render(ordered), "{\"z\": 1, \"a\": 2}|za");
  nlohmann::json sorted = {{"d", {{"z", 1}, {"a", 2}}}};
  EXPECT_EQ(*tmpl->render(sorted), "{\"a\": 2, \"z\": 1}|az");
}

TEST(ChatTemplateApi, StrftimeNowUsesTheFixedClockOrTheRealOne) {
  auto tmpl = ChatTemplate::parse("{{ strftime_now('%d %b %Y') }}");
  ASSERT_TRUE(tmpl.has_value());
  RenderOptions options;
  options.now = std::chrono::sys_days(std::chrono::year(2026) / 11 / 27);
  EXPECT_EQ(*tmpl->render(nlohmann::ordered_json::object(), options), "27 Nov 2026");
  auto now = tmpl->render(nlohmann::ordered_json::object());
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->size(), 11u);
}

TEST(ChatTemplateApi, CopiesShareTheProgramAndRendersAreIndependent) {
  auto tmpl = ChatTemplate::parse("{% set g = [1, 2]|select %}{{ g|list }}{{ g|list }}");
  ASSERT_TRUE(tmpl.has_value());
  const ChatTemplate copy = *tmpl;
  EXPECT_EQ(*tmpl->render(nlohmann::ordered_json::object()), "[1, 2][]");
  EXPECT_EQ(*copy.render(nlohmann::ordered_json::object()), "[1, 2][]");
}

TEST(ChatTemplateFixtures, AllParse) {
  for (const char* name :
       {"smollm2", "gemma3", "llama31", "llama32", "qwen25", "mistral_nemo", "deepseek_r1_distill_llama"}) {
    const std::string source = read_file(templates_dir() + name + ".jinja");
    ASSERT_FALSE(source.empty()) << name;
    auto tmpl = ChatTemplate::parse(source);
    EXPECT_TRUE(tmpl.has_value()) << name << ": " << tmpl.error().message;
  }
}

}  // namespace
}  // namespace tern::chat
