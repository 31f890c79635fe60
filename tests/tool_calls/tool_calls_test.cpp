// Tool calls on local models, without a model: which syntax each real chat template gets, the parser
// reading calls out of a stream cut at every byte, and conversations with tools made ready for the
// templates (native ones given `tools` and object arguments; others a system message and plain turns).

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tokenizer/template/chat_template.h"
#include "tool_calls/format.h"
#include "tool_calls/grammar_spec.h"
#include "tool_calls/parser.h"
#include "tool_calls/prompt.h"

namespace tern::tool_calls {
namespace {

using nlohmann::ordered_json;

std::string read_template(const std::string& name) {
  std::ifstream in(std::string(TERN_TEST_DATA_DIR) + "/templates/" + name + ".jinja");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_FALSE(text.str().empty()) << name;
  return text.str();
}

TEST(ToolCallFormat, EachTemplateGetsItsFamilysSyntax) {
  EXPECT_EQ(Family::kHermes, detect_format(read_template("qwen25")).family);
  EXPECT_EQ(Family::kLlama3, detect_format(read_template("llama31")).family);
  EXPECT_EQ(Family::kLlama3, detect_format(read_template("llama32")).family);
  for (const char* name : {"smollm2", "gemma3", "mistral_nemo", "deepseek_r1_distill_llama"}) {
    const Format format = detect_format(read_template(name));
    EXPECT_EQ(Family::kGeneric, format.family) << name;
    EXPECT_FALSE(format.is_native) << name;
    EXPECT_EQ("<tool_call>", format.trigger) << name;
  }
  EXPECT_FALSE(detect_format(read_template("llama31")).allows_parallel) << "Llama 3.x templates take one call per turn";
}

/// Everything a parser gives out for `text` pushed in pieces of `piece` bytes.
struct Parsed {
  std::string text;
  std::vector<wire::ToolCall> calls;
  int num_deltas = 0;
};
Parsed parse(const Format& format, const std::string& text, size_t piece) {
  ToolCallParser parser(format);
  Parsed out;
  auto take = [&](ToolCallParser::Output o) {
    out.text += o.text;
    out.num_deltas += static_cast<int>(o.calls.size());
    wire::add_tool_call_deltas(out.calls, o.calls);
  };
  for (size_t at = 0; at < text.size(); at += piece) take(parser.push(std::string_view(text).substr(at, piece)));
  take(parser.finish());
  return out;
}

TEST(ToolCallParser, HermesTextAndTwoCallsAtEveryCut) {
  const Format format = detect_format(read_template("qwen25"));
  const std::string output =
      "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris {\\\"x\\\"}\", \"days\": [1, 2]}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  for (size_t piece : {1, 2, 3, 7, 1000}) {
    const Parsed p = parse(format, output, piece);
    EXPECT_EQ("Let me check both.", p.text) << piece;
    ASSERT_EQ(2u, p.calls.size()) << piece;
    EXPECT_EQ("get_weather", p.calls[0].name);
    EXPECT_EQ(R"({"city": "Paris {\"x\"}", "days": [1, 2]})", p.calls[0].arguments);
    EXPECT_EQ("get_time", p.calls[1].name);
    EXPECT_EQ("{}", p.calls[1].arguments);
    EXPECT_TRUE(p.calls[0].id.starts_with("call_") && p.calls[0].id.size() == 29) << p.calls[0].id;
    EXPECT_NE(p.calls[0].id, p.calls[1].id);
    if (piece == 1) {
      EXPECT_GT(p.num_deltas, 10) << "arguments stream as they come";
    }
  }
}

TEST(ToolCallParser, Llama3JsonCall) {
  const Format format = detect_format(read_template("llama32"));
  const Parsed p = parse(format, R"({"name": "get_weather", "parameters": {"city": "Oslo"}})", 1);
  EXPECT_EQ("", p.text);
  ASSERT_EQ(1u, p.calls.size());
  EXPECT_EQ("get_weather", p.calls[0].name);
  EXPECT_EQ(R"({"city": "Oslo"})", p.calls[0].arguments);
}

TEST(ToolCallParser, TextThatOnlyLooksLikeACallStaysText) {
  const Format format = detect_format(read_template("smollm2"));
  for (size_t piece : {1, 4, 100}) {
    EXPECT_EQ("a <tool_ and <b>  ", parse(format, "a <tool_ and <b>  ", piece).text) << "held back, then released at the end";
    const Parsed broken = parse(format, "x <tool_call> not json", piece);
    EXPECT_EQ("x <tool_call> not json", broken.text);
    EXPECT_TRUE(broken.calls.empty());
    const Parsed cut = parse(format, "<tool_call>\n{\"name\": \"f", piece);
    EXPECT_EQ("<tool_call>\n{\"name\": \"f", cut.text) << "a header cut off by max_tokens is given back";
  }
}

TEST(ToolCallParser, ArgumentsCutOffStayPartial) {
  const Parsed p = parse(detect_format(read_template("qwen25")), "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"xy", 3);
  ASSERT_EQ(1u, p.calls.size());
  EXPECT_EQ("{\"a\": \"xy", p.calls[0].arguments);
}

std::vector<wire::ToolDefinition> weather_tools() {
  wire::ToolDefinition weather{.name = "get_weather", .description = "Get the current weather in a city.",
                               .parameters = ordered_json::parse(R"({"type": "object", "properties": {"location": {"type": "string"},
                                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]})"),
                               .strict = false};
  return {weather};
}

ordered_json agent_conversation(bool arguments_as_text) {
  const ordered_json arguments = {{"location", "Paris"}, {"unit", "celsius"}};
  return ordered_json::array({
      {{"role", "system"}, {"content", "You can call tools."}},
      {{"role", "user"}, {"content", "Weather in Paris and Rome?"}},
      {{"role", "assistant"}, {"content", ""}, {"tool_calls", ordered_json::array({
          {{"id", "call_1"}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", arguments_as_text ? ordered_json(arguments.dump()) : arguments}}}},
          {{"id", "call_2"}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", arguments_as_text ? ordered_json(R"({"location": "Rome"})") : ordered_json{{"location", "Rome"}}}}}}})}},
      {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "22 C"}},
      {{"role", "tool"}, {"tool_call_id", "call_2"}, {"content", "25 C"}}});
}

std::string render(const std::string& template_name, const ordered_json& messages, const ordered_json& tools) {
  auto program = chat::ChatTemplate::parse(read_template(template_name));
  EXPECT_TRUE(program);
  auto text = program->render(ordered_json{{"messages", messages}, {"tools", tools}, {"add_generation_prompt", true},
                                           {"bos_token", "<s>"}, {"eos_token", "</s>"}});
  EXPECT_TRUE(text) << template_name << ": " << text.error().message;
  return text ? *text : std::string();
}

TEST(ToolPrompt, ANativeTemplateGetsToolsAndObjectArguments) {
  // As Hugging Face renders it with arguments given as objects (template_test checks that rendering
  // against jinja2); the wire carries them as JSON text.
  const auto tools = weather_tools();
  const TemplateInput input = template_input(detect_format(read_template("qwen25")), agent_conversation(true), tools);
  EXPECT_EQ(render("qwen25", agent_conversation(false), tools_json(tools)), render("qwen25", input.messages, input.tools));
  const std::string text = render("qwen25", input.messages, input.tools);
  EXPECT_NE(text.find(R"(<tool_call>
{"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}}
</tool_call>)"), std::string::npos) << text;
  // Without tools offered (tool_choice none) the history still renders, and `tools` stays None.
  EXPECT_TRUE(template_input(detect_format(read_template("qwen25")), agent_conversation(true), {}).tools.is_null());
}

TEST(ToolPrompt, AGenericTemplateGetsTheToolsInItsSystemMessageAndPlainTurns) {
  const auto tools = weather_tools();
  for (const char* name : {"smollm2", "gemma3", "mistral_nemo"}) {
    const TemplateInput input = template_input(detect_format(read_template(name)), agent_conversation(true), tools);
    EXPECT_TRUE(input.tools.is_null());
    const std::string text = render(name, input.messages, input.tools);
    EXPECT_NE(text.find("You can call tools.\n\n# Tools"), std::string::npos) << name << ": " << text;
    EXPECT_NE(text.find(R"({"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.", "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}})"),
              std::string::npos) << name << ": " << text;
    EXPECT_NE(text.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>"),
              std::string::npos) << name << ": " << text;
    EXPECT_NE(text.find("<tool_response>\n22 C\n</tool_response>\n<tool_response>\n25 C\n</tool_response>"), std::string::npos)
        << name << ": both results in one user turn (Gemma's and Mistral's templates insist turns alternate): " << text;
  }
}

TEST(ToolGrammarSpec, ModesShapeTheStructuralTag) {
  const auto tools = weather_tools();
  const Format hermes = detect_format(read_template("qwen25"));
  auto spec = [&](wire::ToolChoice choice, const Format& format) { return ordered_json::parse(structural_tag(format, tools, choice)); };
  using Mode = wire::ToolChoice::Mode;
  const auto automatic = spec({.mode = Mode::kAuto, .name = {}, .parallel = true}, hermes);
  EXPECT_EQ("triggered_tags", automatic["format"]["type"]);
  EXPECT_EQ("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ", automatic["format"]["tags"][0]["begin"]);
  EXPECT_EQ("location", automatic["format"]["tags"][0]["content"]["json_schema"]["properties"].begin().key()) << "schema key order kept";
  const auto required = spec({.mode = Mode::kRequired, .name = {}, .parallel = false}, hermes);
  EXPECT_EQ("tags_with_separator", required["format"]["type"]);
  EXPECT_TRUE(required["format"]["at_least_one"].get<bool>());
  EXPECT_TRUE(required["format"]["stop_after_first"].get<bool>());
  const auto named = spec({.mode = Mode::kNamed, .name = "get_weather", .parallel = true}, detect_format(read_template("llama31")));
  EXPECT_EQ("tag", named["format"]["type"]);
  EXPECT_EQ("{\"name\": \"get_weather\", \"parameters\": ", named["format"]["begin"]);
}

}  // namespace
}  // namespace tern::tool_calls
