// The Anthropic Messages adapter: bodies parsed into the neutral request (system and content blocks
// flattened, Anthropic's required fields enforced), and events rendered in Anthropic's shapes.

#include "wire/anthropic/messages.h"

#include <gtest/gtest.h>

namespace tern::wire {
namespace {

using json = nlohmann::json;

std::string body(const json& extra = json::object()) {
  json b = {{"model", "m"}, {"max_tokens", 32}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  for (const auto& [k, v] : extra.items()) b[k] = v;
  return b.dump();
}

std::string refused(const std::string& text, const std::string& param) {
  auto r = parse_anthropic_request(text);
  if (r) {
    ADD_FAILURE() << "accepted: " << text;
    return {};
  }
  EXPECT_EQ(r.error().status, 400) << text;
  EXPECT_EQ(r.error().param, param) << text << " -> " << r.error().message;
  return r.error().message;
}

TEST(AnthropicRequest, SystemBlocksAndSamplingBecomeTheNeutralRequest) {
  auto r = parse_anthropic_request(body({{"system", {{{"type", "text"}, {"text", "Be "}}, {{"type", "text"}, {"text", "brief."}}}},
                                         {"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
                                                       {{"role", "assistant"}, {"content", "c"}},
                                                       {{"role", "user"}, {"content", "d"}}}},
                                         {"stop_sequences", {"END"}}, {"temperature", 0.5}, {"top_p", 0.9}, {"top_k", 40},
                                         {"stream", true}, {"metadata", {{"user_id", "u1"}}}, {"service_tier", "auto"},
                                         {"cache_control", {{"type", "ephemeral"}}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, RequestKind::kChat);
  EXPECT_EQ(r->max_tokens, 32);
  ASSERT_EQ(r->messages.size(), 4u);
  EXPECT_EQ(r->messages[0]["role"], "system");
  EXPECT_EQ(r->messages[0]["content"], "Be brief.");
  EXPECT_EQ(r->messages[1]["content"], "ab");
  EXPECT_EQ(r->messages[2]["role"], "assistant");
  EXPECT_EQ(r->stop, std::vector<std::string>{"END"});
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.9f);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_FALSE(r->ignore_eos);
}

// tern's own extension, as on its OpenAI endpoints (tern bench sends it): generate exactly max_tokens.
TEST(AnthropicRequest, TakesIgnoreEos) {
  auto r = parse_anthropic_request(body({{"ignore_eos", true}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->ignore_eos);
  refused(body({{"ignore_eos", "yes"}}), "ignore_eos");
}

// And speculative decoding asked for or refused per request.
TEST(AnthropicRequest, TakesSpeculative) {
  auto r = parse_anthropic_request(body({{"speculative", false}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->speculative, std::optional<bool>(false));
  auto unset = parse_anthropic_request(body());
  ASSERT_TRUE(unset);
  EXPECT_FALSE(unset->speculative.has_value());
  refused(body({{"speculative", 1}}), "speculative");
}

TEST(AnthropicRequest, RefusesWhatItCannotHonourNamingTheField) {
  EXPECT_EQ(refused(json{{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}.dump(), "max_tokens"), "max_tokens: Field required");
  refused(body({{"max_tokens", 0}}), "max_tokens");
  refused(body({{"model", ""}}), "model");
  refused(body({{"messages", json::array()}}), "messages");
  refused(body({{"messages", {{{"role", "system"}, {"content", "x"}}}}}), "messages.0.role");
  refused(body({{"messages", {{{"role", "user"}}}}}), "messages.0.content");
  refused(body({{"messages", {{{"role", "user"}, {"content", {{{"type", "image"}, {"source", {}}}}}}}}}), "messages.0.content.0.type");
  refused(body({{"temperature", 1.5}}), "temperature");
  refused(body({{"top_k", -1}}), "top_k");
  refused(body({{"stop_sequences", {""}}}), "stop_sequences");
  refused(body({{"tools", {{{"name", "x"}}}}}), "tools.0.input_schema");
  refused(body({{"metadata", {{"other", 1}}}}), "metadata.other");
  EXPECT_EQ(refused(body({{"frequency_penalty", 1}}), "frequency_penalty"), "frequency_penalty: Extra inputs are not permitted");
  refused("{not json", "");
  refused("[1]", "");
}

// cache_control on system and message blocks, and at the top level, become breakpoints: a message and
// the bytes of its (flattened) content before the breakpoint, with the TTL.
TEST(AnthropicRequest, CacheControlBecomesBreakpoints) {
  const json one_hour = {{"type", "ephemeral"}, {"ttl", "1h"}};
  const json five = {{"type", "ephemeral"}};
  auto r = parse_anthropic_request(body({{"system", {{{"type", "text"}, {"text", "Tools: ..."}, {"cache_control", one_hour}},
                                                     {{"type", "text"}, {"text", " Be brief."}}}},
                                         {"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "doc"}, {"cache_control", five}},
                                                                                       {{"type", "text"}, {"text", " question"}}}}},
                                                       {{"role", "assistant"}, {"content", "answer"}},
                                                       {{"role", "user"}, {"content", "more"}}}},
                                         {"cache_control", five}}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->cache_breakpoints.size(), 3u);
  EXPECT_EQ(r->cache_breakpoints[0].message, 0);
  EXPECT_EQ(r->cache_breakpoints[0].chars, 10u);  // "Tools: ..."
  EXPECT_EQ(r->cache_breakpoints[0].ttl_s, 3600);
  EXPECT_EQ(r->cache_breakpoints[1].message, 1);
  EXPECT_EQ(r->cache_breakpoints[1].chars, 3u);  // "doc"
  EXPECT_EQ(r->cache_breakpoints[1].ttl_s, 300);
  EXPECT_EQ(r->cache_breakpoints[2].message, 3);  // top level: after the last message
  EXPECT_EQ(r->cache_breakpoints[2].chars, 4u);
  EXPECT_TRUE(parse_anthropic_request(body())->cache_breakpoints.empty());
}

TEST(AnthropicRequest, RefusesBadCacheControlNamingTheField) {
  const auto block = [](const json& control) {
    return body({{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "x"}, {"cache_control", control}}}}}}}});
  };
  refused(block({{"type", "persistent"}}), "messages.0.content.0.cache_control.type");
  EXPECT_EQ(refused(block({{"type", "ephemeral"}, {"ttl", "2h"}}), "messages.0.content.0.cache_control.ttl"),
            "messages.0.content.0.cache_control.ttl: Input should be '5m' or '1h'");
  refused(block({{"type", "ephemeral"}, {"scope", "org"}}), "messages.0.content.0.cache_control.scope");
  refused(block("ephemeral"), "messages.0.content.0.cache_control");
  refused(body({{"cache_control", {{"ttl", "5m"}}}}), "cache_control.type");
  json blocks = json::array();
  for (int i = 0; i < 5; ++i) blocks.push_back({{"type", "text"}, {"text", "x"}, {"cache_control", {{"type", "ephemeral"}}}});
  EXPECT_EQ(refused(body({{"messages", {{{"role", "user"}, {"content", blocks}}}}}), ""),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.");
}

// Tools and an agent's history: tool_use blocks become the assistant's tool_calls, tool_result blocks
// `tool` messages before the user's text (OpenAI's shape, which the other layers speak).
TEST(AnthropicRequest, ToolsAndToolTurnsBecomeTheNeutralRequest) {
  const json calculator = {{"name", "add"}, {"description", "Adds two numbers"},
                           {"input_schema", {{"type", "object"}, {"properties", {{"a", {{"type", "number"}}}, {"b", {{"type", "number"}}}}}}}};
  const json messages = {{{"role", "user"}, {"content", "What is 2 + 3?"}},
                         {{"role", "assistant"}, {"content", {{{"type", "text"}, {"text", "Let me add."}},
                                                              {{"type", "tool_use"}, {"id", "toolu_1"}, {"name", "add"}, {"input", {{"a", 2}, {"b", 3}}}}}}},
                         {{"role", "user"}, {"content", {{{"type", "tool_result"}, {"tool_use_id", "toolu_1"}, {"content", "5"}},
                                                         {{"type", "text"}, {"text", "Thanks."}}}}}};
  auto r = parse_anthropic_request(body({{"messages", messages}, {"tools", {calculator}},
                                         {"tool_choice", {{"type", "tool"}, {"name", "add"}, {"disable_parallel_tool_use", true}}}}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->tools.size(), 1u);
  EXPECT_EQ(r->tools[0].parameters["properties"]["a"]["type"], "number");
  EXPECT_EQ(r->tool_choice.mode, ToolChoice::Mode::kNamed);
  EXPECT_FALSE(r->tool_choice.parallel);
  ASSERT_EQ(r->messages.size(), 4u);
  EXPECT_EQ(r->messages[1]["content"], "Let me add.");
  EXPECT_EQ(r->messages[1]["tool_calls"][0]["id"], "toolu_1");
  EXPECT_EQ(json::parse(r->messages[1]["tool_calls"][0]["function"]["arguments"].get<std::string>()), (json{{"a", 2}, {"b", 3}}));
  EXPECT_EQ(r->messages[2], (nlohmann::ordered_json{{"role", "tool"}, {"tool_call_id", "toolu_1"}, {"content", "5"}}));
  EXPECT_EQ(r->messages[3]["content"], "Thanks.");
  r = parse_anthropic_request(body({{"tools", {calculator}}, {"tool_choice", {{"type", "any"}}}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tool_choice.mode, ToolChoice::Mode::kRequired);

  // Bad input names its field.
  refused(body({{"messages", {{{"role", "user"}, {"content", {{{"type", "tool_result"}, {"tool_use_id", "toolu_9"}, {"content", "5"}}}}}}}}),
          "messages.0.content.0.tool_use_id");
  refused(body({{"tools", {{{"type", "web_search_20250305"}, {"name", "web_search"}}}}}), "tools.0.type");
  refused(body({{"tools", {{{"name", "bad name"}, {"input_schema", json::object()}}}}}), "tools.0.name");
  refused(body({{"tools", {calculator, calculator}}}), "tools.1.name");
  refused(body({{"tools", {calculator}}, {"tool_choice", {{"type", "tool"}, {"name", "sub"}}}}), "tool_choice.name");
  refused(body({{"tools", {calculator}}, {"tool_choice", {{"type", "sometimes"}}}}), "tool_choice.type");
  refused(body({{"tool_choice", {{"type", "any"}}}}), "tool_choice");
  refused(body({{"messages", {{{"role", "user"}, {"content", {{{"type", "tool_use"}, {"id", "t"}, {"name", "add"}, {"input", json::object()}}}}}}}}),
          "messages.0.content.0.type");
}

// A stop string that ended the turn is stop_reason "stop_sequence" with the string; tool calls are
// tool_use blocks, streamed as content_block_start + input_json_delta pieces, stop_reason "tool_use".
TEST(AnthropicRenderer, StopSequencesAndToolUseBlocks) {
  auto r = parse_anthropic_request(body());
  ASSERT_TRUE(r);
  AnthropicRenderer renderer(*r);
  Event last;
  last.finished = true;
  last.finish_reason = "stop";
  last.stop_sequence = "END";
  json full = json::parse(renderer.full_response({.text = "hello", .logprobs = {}, .tool_calls = {}}, last));
  EXPECT_EQ(full["stop_reason"], "stop_sequence");
  EXPECT_EQ(full["stop_sequence"], "END");
  last.stop_sequence.clear();
  last.finish_reason = "tool_calls";
  full = json::parse(renderer.full_response({.text = "", .logprobs = {}, .tool_calls = {{.id = "toolu_1", .name = "add", .arguments = "{\"a\":2}"}}}, last));
  EXPECT_EQ(full["stop_reason"], "tool_use");
  EXPECT_EQ(full["content"], json::parse(R"([{"type":"tool_use","id":"toolu_1","name":"add","input":{"a":2}}])"));

  Event first;
  std::string wire = renderer.stream_start(first);
  Event text;
  text.text = "Adding.";
  wire += renderer.stream_event(text);
  Event call;
  call.tool_calls = {{.index = 0, .id = "toolu_1", .name = "add", .arguments = "{\"a\":"}};
  wire += renderer.stream_event(call);
  Event more;
  more.tool_calls = {{.index = 0, .id = "", .name = "", .arguments = "2}"}};
  wire += renderer.stream_event(more);
  wire += renderer.stream_event(last);
  std::vector<json> events;
  for (size_t at = wire.find("data: "); at != std::string::npos; at = wire.find("data: ", at + 1)) {
    events.push_back(json::parse(wire.substr(at + 6, wire.find('\n', at) - at - 6)));
  }
  std::vector<std::string> types;
  for (const auto& e : events) types.push_back(e["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
                                             "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                                             "message_delta", "message_stop"}));
  EXPECT_EQ(events[5]["index"], 1);
  EXPECT_EQ(events[5]["content_block"], json::parse(R"({"type":"tool_use","id":"toolu_1","name":"add","input":{}})"));
  EXPECT_EQ(events[6]["delta"], json::parse(R"({"type":"input_json_delta","partial_json":"{\"a\":"})"));
  EXPECT_EQ(events[9]["delta"]["stop_reason"], "tool_use");
}

// OpenRouter's fallback forms on Messages: `fallbacks` ([{"model"}], at most 3, only `model` per entry)
// or `models` (its first entry the primary when `model` is absent), never both.
TEST(AnthropicRequest, FallbackForms) {
  auto r = parse_anthropic_request(body({{"fallbacks", {{{"model", "b"}}, {{"model", "c"}}}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->fallback_models, (std::vector<std::string>{"b", "c"}));
  json without_model = json::parse(body({{"models", {"x", "y"}}}));
  without_model.erase("model");
  r = parse_anthropic_request(without_model.dump());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->model, "x");
  EXPECT_EQ(r->fallback_models, std::vector<std::string>{"y"});
  without_model.erase("models");
  refused(without_model.dump(), "model");
  refused(body({{"fallbacks", {{{"model", "b"}}}}, {"models", {"c"}}}), "fallbacks");
  refused(body({{"fallbacks", {{{"model", "b"}, {"max_tokens", 5}}}}}), "fallbacks.0.max_tokens");
  refused(body({{"fallbacks", {{{"model", "a"}}, {{"model", "b"}}, {{"model", "c"}}, {{"model", "d"}}}}}), "fallbacks");
  refused(body({{"fallbacks", {"b"}}}), "fallbacks.0");
  refused(body({{"fallbacks", {json::object()}}}), "fallbacks.0.model");
}

TEST(AnthropicRenderer, UsageStopReasonsAndErrorsInAnthropicShapes) {
  auto r = parse_anthropic_request(body());
  ASSERT_TRUE(r);
  AnthropicRenderer renderer(*r);
  const Usage usage{.prompt_tokens = 100, .completion_tokens = 9, .cached_tokens = 60, .cache_write_tokens = 16, .cost_usd = 0.5};
  const json u = AnthropicRenderer::usage_json(usage);
  EXPECT_EQ(u["input_tokens"], 24);  // neither read from nor written to a cache
  EXPECT_EQ(u["cache_read_input_tokens"], 60);
  EXPECT_EQ(u["cache_creation_input_tokens"], 16);
  EXPECT_EQ(u["cache_creation"], (json{{"ephemeral_5m_input_tokens", 16}, {"ephemeral_1h_input_tokens", 0}}));
  EXPECT_FALSE(u.contains("cache_retention_denied_tokens"));
  EXPECT_EQ(u["output_tokens"], 9);
  const json long_writes = AnthropicRenderer::usage_json(
      {.prompt_tokens = 100, .completion_tokens = 1, .cached_tokens = 0, .cache_write_tokens = 48, .cache_write_1h_tokens = 32,
       .retention_denied_tokens = 16, .cost_usd = std::nullopt});
  EXPECT_EQ(long_writes["cache_creation"], (json{{"ephemeral_5m_input_tokens", 16}, {"ephemeral_1h_input_tokens", 32}}));
  EXPECT_EQ(long_writes["cache_retention_denied_tokens"], 16);
  EXPECT_EQ(AnthropicRenderer::stop_reason("length"), "max_tokens");
  EXPECT_EQ(AnthropicRenderer::stop_reason("stop"), "end_turn");
  Event last;
  last.finished = true;
  last.finish_reason = "length";
  last.usage = usage;
  last.model = "served";
  last.deployment = "local-a";
  const json full = json::parse(renderer.full_response({.text = "hello", .logprobs = {}, .tool_calls = {}}, last));
  EXPECT_EQ(full["provider"], "local-a");
  EXPECT_EQ(full["type"], "message");
  EXPECT_EQ(full["model"], "served");
  EXPECT_EQ(full["content"][0]["text"], "hello");
  EXPECT_EQ(full["stop_reason"], "max_tokens");
  for (auto [status, type] : {std::pair{400, "invalid_request_error"}, std::pair{401, "authentication_error"}, std::pair{404, "not_found_error"},
                              std::pair{429, "rate_limit_error"}, std::pair{500, "api_error"}, std::pair{503, "overloaded_error"}}) {
    const http::Response response = renderer.error_response(server_error(status, "boom"));
    EXPECT_EQ(response.status, status);
    EXPECT_EQ(json::parse(response.body), (json{{"type", "error"}, {"error", {{"type", type}, {"message", "boom"}}}}));
  }
  // A stream: start events, deltas, then the closing three; an error mid-stream is an `error` event.
  // The first event carries the prompt's counts (the engine knows them once the prompt is computed):
  // message_start sends them, as Anthropic does, with the deployment that answers.
  Event first;
  first.model = "served";
  first.deployment = "local-a";
  first.usage = {.prompt_tokens = 100, .completion_tokens = 1, .cached_tokens = 60, .cache_write_tokens = 16, .cost_usd = std::nullopt};
  const std::string start = renderer.stream_start(first);
  EXPECT_EQ(start.find("event: message_start\n"), 0u);
  const json message_start = json::parse(start.substr(start.find("data: ") + 6, start.find('\n', start.find("data: ")) - start.find("data: ") - 6));
  EXPECT_EQ(message_start["message"]["usage"]["input_tokens"], 24);
  EXPECT_EQ(message_start["message"]["usage"]["cache_read_input_tokens"], 60);
  EXPECT_EQ(message_start["message"]["usage"]["cache_creation_input_tokens"], 16);
  EXPECT_EQ(message_start["message"]["usage"]["output_tokens"], 1);
  EXPECT_EQ(message_start["message"]["model"], "served");
  EXPECT_EQ(message_start["message"]["provider"], "local-a");
  EXPECT_NE(start.find("event: content_block_start\n"), std::string::npos);
  EXPECT_NE(start.find("event: ping\n"), std::string::npos);
  Event delta;
  delta.text = "hi";
  EXPECT_EQ(renderer.stream_event(delta),
            "event: content_block_delta\ndata: {\"delta\":{\"text\":\"hi\",\"type\":\"text_delta\"},\"index\":0,\"type\":\"content_block_delta\"}\n\n");
  const std::string end = renderer.stream_event(last);
  EXPECT_LT(end.find("content_block_stop"), end.find("message_delta"));
  EXPECT_LT(end.find("message_delta"), end.find("message_stop"));
  EXPECT_EQ(renderer.stream_error(server_error(502, "upstream died")).find("event: error\n"), 0u);
}

}  // namespace
}  // namespace tern::wire
