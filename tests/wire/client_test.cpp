// The client side of the schema codecs: request bodies written from a neutral Request (what the
// remote provider sends upstream and tern bench sends to targets), stream payloads and error bodies
// read back into neutral terms.

#include <gtest/gtest.h>

#include "wire/anthropic/client.h"
#include "wire/openai/client.h"

namespace tern::wire {
namespace {

using json = nlohmann::json;

Request chat(std::vector<std::pair<std::string, std::string>> turns) {
  Request r;
  r.kind = RequestKind::kChat;
  r.messages = nlohmann::ordered_json::array();
  for (auto& [role, content] : turns) r.messages.push_back({{"role", role}, {"content", content}});
  return r;
}

TEST(OpenAiClient, RequestBodySendsOnlyWhatDiffersFromTheDefaults) {
  Request r = chat({{"system", "be brief"}, {"user", "hi"}});
  r.max_tokens = 9;
  json body = openai_request_body(r, "upstream-name");
  EXPECT_EQ(body["model"], "upstream-name");
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["messages"][1]["content"], "hi");
  EXPECT_EQ(body["max_tokens"], 9);
  for (const char* absent : {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "ignore_eos", "prompt_cache_retention", "prompt_cache_key"}) {
    EXPECT_FALSE(body.contains(absent)) << absent;
  }
  r.sampling.temperature = 0;
  r.sampling.top_k = 40;
  r.seed_given = true;
  r.sampling.seed = 7;
  r.stop = {"\n\n"};
  r.cache_breakpoints.push_back({.message = -1, .chars = 0, .ttl_s = 24 * 3600});
  r.prompt_cache_key = "session-1";
  body = openai_request_body(r, "m");
  EXPECT_EQ(body["temperature"], 0.0);
  EXPECT_EQ(body["top_k"], 40);
  EXPECT_EQ(body["seed"], 7);
  EXPECT_EQ(body["stop"], json::array({"\n\n"}));
  EXPECT_EQ(body["prompt_cache_retention"], "24h");
  EXPECT_EQ(body["prompt_cache_key"], "session-1");
  Request completion;
  completion.kind = RequestKind::kCompletion;
  completion.prompt_tokens = {1, 2, 3};
  EXPECT_EQ(openai_request_body(completion, "m")["prompt"], json::array({1, 2, 3}));
}

TEST(OpenAiClient, StreamChunksInNeutralTerms) {
  auto delta = parse_openai_stream_chunk(R"({"choices":[{"index":0,"delta":{"content":"Hi","reasoning_content":"hmm"},"finish_reason":null}]})");
  ASSERT_TRUE(delta);
  EXPECT_EQ(delta->text, "Hi");
  EXPECT_EQ(delta->reasoning, "hmm");
  EXPECT_EQ(delta->finish_reason, "");
  delta = parse_openai_stream_chunk(R"({"choices":[{"index":0,"delta":{"content":null},"finish_reason":"length"}]})");
  EXPECT_EQ(delta->text, "");
  EXPECT_EQ(delta->finish_reason, "length");
  delta = parse_openai_stream_chunk(
      R"({"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8,"cache_write_tokens":2}}})");
  ASSERT_TRUE(delta->usage);
  EXPECT_EQ(delta->usage->prompt_tokens, 10);
  EXPECT_EQ(delta->usage->cached_tokens, 8);
  EXPECT_EQ(delta->usage->cache_write_tokens, 2);
  EXPECT_EQ(delta->usage->cache_write_1h_tokens, -1) << "not reported";
  delta = parse_openai_stream_chunk(R"({"error":{"message":"boom","type":"server_error"}})");
  ASSERT_TRUE(delta->error);
  EXPECT_EQ(delta->error->message, "boom");
  EXPECT_EQ(delta->error->type, "server_error");
  EXPECT_TRUE(parse_openai_stream_chunk("[DONE]")->is_end);
  EXPECT_FALSE(parse_openai_stream_chunk("[1, 2]"));
}

// System messages go to `system`, turns alternate (consecutive ones merged, tool results as user
// turns), and breakpoints become cache_control where they fall.
TEST(AnthropicClient, RequestBodyPlacesBreakpointsWhereTheyFall) {
  Request r = chat({{"system", "You are a helpful agent."}, {"user", "first"}, {"user", "42"}, {"assistant", "ok"}, {"user", "next"}});
  r.max_tokens = 32;
  r.cache_breakpoints = {{.message = 0, .chars = 24, .ttl_s = 3600},  // the end of the system prompt
                         {.message = 1, .chars = 3, .ttl_s = 300},    // inside "first": the block is split
                         {.message = 4, .chars = 4, .ttl_s = 300}};   // the end of the conversation
  auto body = anthropic_request_body(r, "claude", 4096);
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ((*body)["model"], "claude");
  EXPECT_EQ((*body)["max_tokens"], 32);
  EXPECT_EQ((*body)["system"], json::parse(R"([{"type":"text","text":"You are a helpful agent.","cache_control":{"type":"ephemeral","ttl":"1h"}}])"));
  const json& messages = (*body)["messages"];
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0]["role"], "user");
  EXPECT_EQ(messages[0]["content"], json::parse(R"([{"type":"text","text":"fir","cache_control":{"type":"ephemeral","ttl":"5m"}},
                                                     {"type":"text","text":"st"},{"type":"text","text":"42"}])"));
  EXPECT_EQ(messages[1]["role"], "assistant");
  EXPECT_EQ(messages[2]["content"][0]["text"], "next");
  EXPECT_FALSE(messages[2]["content"][0].contains("cache_control"));
  EXPECT_EQ((*body)["cache_control"], json::parse(R"({"type":"ephemeral","ttl":"5m"})")) << "the top-level form";
  EXPECT_FALSE(body->contains("temperature"));
  // Anthropic's temperature range is [0, 1]; max_tokens is required.
  r.sampling.temperature = 1.5f;
  r.max_tokens.reset();
  body = anthropic_request_body(r, "claude", 4096);
  EXPECT_EQ((*body)["temperature"], 1.0);
  EXPECT_EQ((*body)["max_tokens"], 4096);
  EXPECT_FALSE(anthropic_request_body(chat({{"system", "only"}}), "claude", 16));
  Request completion;
  completion.kind = RequestKind::kCompletion;
  completion.prompt = "Once";
  EXPECT_FALSE(anthropic_request_body(completion, "claude", 16));
}

// Tools both ways: an OpenAI-shaped history and tools become Anthropic's tool_use / tool_result blocks,
// tools and tool_choice; OpenAI's stream pieces of tool calls are read back.
TEST(AnthropicClient, ToolsAndToolTurnsTranslate) {
  Request r = chat({{"user", "2 + 3?"}});
  r.messages.push_back({{"role", "assistant"}, {"content", ""},
                        {"tool_calls", {{{"id", "call_1"}, {"type", "function"}, {"function", {{"name", "add"}, {"arguments", "{\"a\":2,\"b\":3}"}}}}}}});
  r.messages.push_back({{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "5"}});
  r.messages.push_back({{"role", "user"}, {"content", "thanks"}});
  r.tools.push_back({.name = "add", .description = "Adds", .parameters = {{"type", "object"}}, .strict = false});
  r.tool_choice = {.mode = ToolChoice::Mode::kRequired, .name = {}, .parallel = false};
  auto body = anthropic_request_body(r, "claude", 64);
  ASSERT_TRUE(body) << body.error().message;
  const json& messages = (*body)["messages"];
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[1]["content"], json::parse(R"([{"type":"tool_use","id":"call_1","name":"add","input":{"a":2,"b":3}}])"));
  EXPECT_EQ(messages[2]["role"], "user");
  EXPECT_EQ(messages[2]["content"], json::parse(R"([{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"5"}]},
                                                     {"type":"text","text":"thanks"}])"));
  EXPECT_EQ((*body)["tools"], json::parse(R"([{"name":"add","description":"Adds","input_schema":{"type":"object"}}])"));
  EXPECT_EQ((*body)["tool_choice"], json::parse(R"({"type":"any","disable_parallel_tool_use":true})"));
  json openai = openai_request_body(r, "gpt");
  EXPECT_EQ(openai["tools"][0]["function"]["name"], "add");
  EXPECT_EQ(openai["tool_choice"], "required");
  EXPECT_EQ(openai["parallel_tool_calls"], false);
  EXPECT_EQ(openai["messages"][2]["tool_call_id"], "call_1");
  // response_format has no Anthropic counterpart: a clear refusal, not a silent drop.
  r.response_format.kind = ResponseFormat::Kind::kJsonObject;
  EXPECT_EQ(anthropic_request_body(r, "claude", 64).error().param, "response_format");
  EXPECT_EQ(openai_request_body(r, "gpt")["response_format"], json::parse(R"({"type":"json_object"})"));

  auto piece = parse_openai_stream_chunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"add","arguments":""}}]}}]})");
  ASSERT_TRUE(piece);
  ASSERT_EQ(piece->tool_calls.size(), 1u);
  EXPECT_EQ(piece->tool_calls[0].index, 1);
  EXPECT_EQ(piece->tool_calls[0].id, "call_2");
  EXPECT_EQ(piece->tool_calls[0].name, "add");
  piece = parse_openai_stream_chunk(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"a\""}}]}}]})");
  EXPECT_EQ(piece->tool_calls[0].arguments, "{\"a\"");
}

// Anthropic refuses empty text blocks: a tool that printed nothing has no content, a turn of only tool
// calls no text block, and a breakpoint with no text before it in its message marks the block before.
TEST(AnthropicClient, NeverSendsAnEmptyTextBlock) {
  Request r = chat({{"system", "sys"}, {"user", "go"}});
  r.messages.push_back({{"role", "assistant"}, {"content", ""},
                        {"tool_calls", {{{"id", "c1"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", "{}"}}}}}}});
  r.messages.push_back({{"role", "tool"}, {"tool_call_id", "c1"}, {"content", ""}});
  r.messages.push_back({{"role", "user"}, {"content", "and?"}});
  r.cache_breakpoints = {{.message = 2, .chars = 0, .ttl_s = 300}, {.message = 3, .chars = 0, .ttl_s = 3600}};
  r.tool_choice = {.mode = ToolChoice::Mode::kNone, .name = {}, .parallel = false};
  r.tools.push_back({.name = "f", .description = {}, .parameters = {{"type", "object"}}, .strict = false});
  auto body = anthropic_request_body(r, "claude", 64);
  ASSERT_TRUE(body) << body.error().message;
  const std::string text = body->dump();
  EXPECT_EQ(text.find(R"("text":"")"), std::string::npos) << text;
  const json& messages = (*body)["messages"];
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0]["content"][0]["cache_control"]["ttl"], "5m") << "the breakpoint before the tool call marks the turn before";
  EXPECT_EQ(messages[1]["content"], json::parse(R"([{"type":"tool_use","id":"c1","name":"f","input":{}}])"));
  EXPECT_EQ(messages[2]["content"][0], json::parse(R"({"type":"tool_result","tool_use_id":"c1","cache_control":{"type":"ephemeral","ttl":"1h"}})"));
  EXPECT_EQ(messages[2]["content"][1]["text"], "and?");
  EXPECT_EQ((*body)["tool_choice"], json::parse(R"({"type":"none"})")) << "disable_parallel_tool_use only where calls can be made";
  // An Anthropic tool result's is_error has no OpenAI field: not sent there.
  r.messages[3]["is_error"] = true;
  EXPECT_TRUE(anthropic_request_body(r, "claude", 64)->at("messages")[2]["content"][0]["is_error"]);
  EXPECT_FALSE(openai_request_body(r, "gpt")["messages"][3].contains("is_error"));
}

// An Anthropic stream's tool_use blocks are numbered as calls 0, 1, ... whatever their block index.
TEST(AnthropicClient, StreamReaderNumbersToolCalls) {
  AnthropicStreamReader reader;
  auto text = reader.read(R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})");
  EXPECT_TRUE(text->tool_calls.empty());
  auto start = reader.read(R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"add","input":{}}})");
  ASSERT_EQ(start->tool_calls.size(), 1u);
  EXPECT_EQ(start->tool_calls[0].index, 0);
  EXPECT_EQ(start->tool_calls[0].id, "toolu_1");
  auto piece = reader.read(R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":2}"}})");
  ASSERT_EQ(piece->tool_calls.size(), 1u);
  EXPECT_EQ(piece->tool_calls[0].index, 0);
  EXPECT_EQ(piece->tool_calls[0].arguments, "{\"a\":2}");
  auto second = reader.read(R"({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"add","input":{}}})");
  EXPECT_EQ(second->tool_calls[0].index, 1);
  EXPECT_TRUE(reader.read(R"({"type":"content_block_delta","index":7,"delta":{"type":"input_json_delta","partial_json":"x"}})")->tool_calls.empty())
      << "a piece of a block never opened is dropped";
  auto end = reader.read(R"({"type":"message_delta","delta":{"stop_reason":"tool_use"}})");
  EXPECT_EQ(end->finish_reason, "tool_calls");
  auto stopped = reader.read(R"({"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"END"}})");
  EXPECT_EQ(stopped->finish_reason, "stop");
  EXPECT_EQ(stopped->stop_sequence, "END");
}

TEST(AnthropicClient, StreamEventsInNeutralTerms) {
  auto start = parse_anthropic_stream_event(
      R"({"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":20,)"
      R"("cache_creation":{"ephemeral_1h_input_tokens":20},"output_tokens":1}}})");
  ASSERT_TRUE(start && start->usage);
  EXPECT_EQ(start->usage->prompt_tokens, 125);
  EXPECT_EQ(start->usage->cache_write_1h_tokens, 20);
  auto thinking = parse_anthropic_stream_event(R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"so"}})");
  EXPECT_EQ(thinking->reasoning, "so");
  EXPECT_EQ(thinking->text, "");
  auto end = parse_anthropic_stream_event(R"({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}})");
  EXPECT_EQ(end->finish_reason, "length");
  Usage usage;
  start->usage->apply_to(usage);
  end->usage->apply_to(usage);
  EXPECT_EQ(usage.prompt_tokens, 125) << "message_delta without input fields keeps message_start's";
  EXPECT_EQ(usage.completion_tokens, 7);
  EXPECT_EQ(parse_anthropic_stream_event(R"({"type":"message_delta","delta":{"stop_reason":"end_turn"}})")->finish_reason, "stop");
  EXPECT_TRUE(parse_anthropic_stream_event(R"({"type":"message_stop"})")->is_end);
  EXPECT_FALSE(parse_anthropic_stream_event("[DONE]"));
}

TEST(ErrorBody, EitherSchemasErrorBecomesTheCallersError) {
  auto openai = parse_error_body(413, R"({"error":{"message":"too big","type":"invalid_request_error","param":"messages","code":"too_big"}})");
  ASSERT_TRUE(openai);
  EXPECT_EQ(openai->status, 413);
  EXPECT_EQ(openai->message, "too big");
  EXPECT_EQ(openai->param, "messages");
  EXPECT_EQ(openai->code, "too_big");
  EXPECT_FALSE(openai->is_retryable);
  auto anthropic = parse_error_body(413, R"({"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}})");
  ASSERT_TRUE(anthropic);
  EXPECT_EQ(anthropic->message, "Request exceeds the maximum size");
  EXPECT_EQ(anthropic->type, "invalid_request_error");
  EXPECT_FALSE(parse_error_body(400, "<html>bad gateway</html>"));
  EXPECT_FALSE(parse_error_body(400, R"({"error":"plain"})"));
}

}  // namespace
}  // namespace tern::wire
