// parse_openai_request: valid chat and completion bodies, and every rejected body: a 400 whose
// `param` names the offending field (empty for a body that is not a JSON object).

#include "wire/openai/request.h"
#include "wire/openai/response.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::wire {
namespace {

using json = nlohmann::json;

/// A minimal valid chat body with `extra` merged in (a null in `extra` is sent as null).
std::string chat(const json& extra = json::object()) {
  json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  for (const auto& [k, v] : extra.items()) body[k] = v;
  return body.dump();
}

std::string completion(const json& extra = json::object()) {
  json body = {{"model", "m"}, {"prompt", "Once upon a time"}};
  for (const auto& [k, v] : extra.items()) body[k] = v;
  return body.dump();
}

Request ok(RequestKind kind, const std::string& body) {
  auto r = parse_openai_request(kind, body);
  EXPECT_TRUE(r.has_value()) << body << " -> " << (r ? "" : r.error().message);
  return r ? *r : Request{};
}

/// Expects a 400 naming `param`; returns the message.
std::string rejected(RequestKind kind, const std::string& body, const std::string& param) {
  auto r = parse_openai_request(kind, body);
  if (r.has_value()) {
    ADD_FAILURE() << "accepted: " << body;
    return {};
  }
  EXPECT_EQ(r.error().status, 400) << body;
  EXPECT_EQ(r.error().param, param) << body << " -> " << r.error().message;
  EXPECT_EQ(r.error().type, "invalid_request_error");
  EXPECT_FALSE(r.error().message.empty());
  return r.error().message;
}

// ---- valid bodies -----------------------------------------------------------------------------

// A chat body with the common sampling fields.
TEST(RequestTest, ValidChat) {
  const auto r = ok(RequestKind::kChat, R"({
    "model": "qwen", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hello", "name": "alice"},
      {"role": "assistant", "content": null},
      {"role": "developer", "content": "rules"},
      {"role": "user", "content": [{"type": "text", "text": "part 1, "}, {"type": "text", "text": "part 2"}]}
    ],
    "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5,
    "frequency_penalty": -0.5, "repetition_penalty": 1.1, "seed": 42, "max_tokens": 100, "stream": true,
    "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3, "ignore_eos": true, "speculative": true,
    "cache_salt": "s", "user": "u", "n": 1, "tools": [], "tool_choice": "none",
    "response_format": {"type": "text"}, "logit_bias": {}, "metadata": {"a": "b"}, "store": false
  })");
  EXPECT_EQ(r.kind, RequestKind::kChat);
  EXPECT_EQ(r.model, "qwen");
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "Hello");
  EXPECT_EQ(r.messages[1]["name"], "alice");
  EXPECT_EQ(r.messages[2]["role"], "assistant");
  EXPECT_EQ(r.messages[2]["content"], "");
  EXPECT_EQ(r.messages[3]["role"], "system");  // developer -> system for chat templates
  EXPECT_EQ(r.messages[4]["content"], "part 1, part 2");  // text parts flattened
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.max_tokens, 100);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.speculative, std::optional<bool>(true));
  EXPECT_EQ(r.cache_salt, "s");
  EXPECT_FALSE(r.prompt.has_value());
  EXPECT_TRUE(r.stop.empty());
}

// The smallest chat body: defaults everywhere.
TEST(RequestTest, MinimalChatDefaults) {
  const auto r = ok(RequestKind::kChat, chat());
  EXPECT_EQ(r.model, "m");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.top_logprobs, -1);
  EXPECT_FALSE(r.seed_given);
  EXPECT_FALSE(r.ignore_eos);
  EXPECT_FALSE(r.speculative.has_value());
  EXPECT_TRUE(r.cache_salt.empty());
  const Sampling defaults;
  EXPECT_EQ(r.sampling.temperature, defaults.temperature);
  EXPECT_EQ(r.sampling.top_p, defaults.top_p);
  EXPECT_EQ(r.sampling.top_k, defaults.top_k);
}

// A completion body with a text prompt.
TEST(RequestTest, ValidCompletion) {
  const auto r = ok(RequestKind::kCompletion, completion({{"max_tokens", 8}, {"logprobs", 2}, {"echo", false}, {"suffix", ""},
                                                        {"best_of", 1}, {"temperature", 0}}));
  EXPECT_EQ(r.kind, RequestKind::kCompletion);
  ASSERT_TRUE(r.prompt.has_value());
  EXPECT_EQ(*r.prompt, "Once upon a time");
  EXPECT_TRUE(r.prompt_tokens.empty());
  EXPECT_EQ(r.max_tokens, 8);
  EXPECT_EQ(r.top_logprobs, 2);  // completions: logprobs is the number of alternatives
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_TRUE(r.messages.is_null() || r.messages.empty());
}

// A prompt as an array of one string.
TEST(RequestTest, CompletionPromptArrayOfOneString) {
  const auto r = ok(RequestKind::kCompletion, completion({{"prompt", {"only one"}}}));
  ASSERT_TRUE(r.prompt.has_value());
  EXPECT_EQ(*r.prompt, "only one");
}

// A prompt given as token ids.
TEST(RequestTest, TokenIdPromptAccepted) {
  const auto r = ok(RequestKind::kCompletion, completion({{"prompt", {1, 2, 3, 2147483647}}}));
  EXPECT_FALSE(r.prompt.has_value());
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 2, 3, 2147483647}));
}

// Token ids must be non-negative 32-bit integers, all of them.
TEST(RequestTest, TokenIdPromptValidated) {
  rejected(RequestKind::kCompletion, completion({{"prompt", {1, -2, 3}}}), "prompt");
  rejected(RequestKind::kCompletion, completion({{"prompt", {1, 2147483648LL}}}), "prompt");
  rejected(RequestKind::kCompletion, completion({{"prompt", json::parse(R"([1, "two"])")}}), "prompt");
  rejected(RequestKind::kCompletion, completion({{"prompt", json::parse(R"([1, 2.5])")}}), "prompt");
}

// Null fields are treated as absent.
TEST(RequestTest, NullFieldsTreatedAsAbsent) {
  const auto r = ok(RequestKind::kChat, chat({{"temperature", nullptr}, {"top_p", nullptr}, {"max_tokens", nullptr},
                                           {"stream", nullptr}, {"stream_options", nullptr}, {"stop", nullptr},
                                           {"seed", nullptr}, {"n", nullptr}, {"tools", nullptr}, {"tool_choice", nullptr},
                                           {"logprobs", nullptr}, {"top_logprobs", nullptr}, {"user", nullptr},
                                           {"cache_salt", nullptr}, {"response_format", nullptr}, {"logit_bias", nullptr},
                                           {"max_completion_tokens", nullptr}, {"functions", nullptr}}));
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.seed_given);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_EQ(r.top_logprobs, -1);
  EXPECT_EQ(r.sampling.temperature, Sampling{}.temperature);

  // A null required field is missing.
  rejected(RequestKind::kChat, chat({{"model", nullptr}}), "model");
  rejected(RequestKind::kChat, chat({{"messages", nullptr}}), "messages");
  rejected(RequestKind::kCompletion, completion({{"prompt", nullptr}}), "prompt");
}

// max_completion_tokens (chat) overrides max_tokens.
TEST(RequestTest, MaxCompletionTokensOverrides) {
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"max_tokens", 10}, {"max_completion_tokens", 20}})).max_tokens, 20);
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"max_completion_tokens", 7}})).max_tokens, 7);
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"max_tokens", 10}, {"max_completion_tokens", nullptr}})).max_tokens, 10);
  rejected(RequestKind::kChat, chat({{"max_completion_tokens", 0}}), "max_completion_tokens");
  // Completions do not know it.
  rejected(RequestKind::kCompletion, completion({{"max_completion_tokens", 5}}), "max_completion_tokens");
}

// stop: a string or a list of strings.
TEST(RequestTest, StopStringOrList) {
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"stop", "\n"}})).stop, (std::vector<std::string>{"\n"}));
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"stop", {"a", "bc"}}})).stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(ok(RequestKind::kChat, chat({{"stop", json::array()}})).stop.empty());
  EXPECT_EQ(ok(RequestKind::kCompletion, completion({{"stop", "END"}})).stop, (std::vector<std::string>{"END"}));
}

// stop: at most 16 strings of 1..256 bytes, strings only.
TEST(RequestTest, StopValidated) {
  json sixteen = json::array(), seventeen = json::array();
  for (int i = 0; i < 17; ++i) {
    const std::string s(static_cast<size_t>(i + 1), 's');
    if (i < 16) sixteen.push_back(s);
    seventeen.push_back(s);
  }
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"stop", sixteen}})).stop.size(), 16u);
  rejected(RequestKind::kChat, chat({{"stop", seventeen}}), "stop");
  rejected(RequestKind::kChat, chat({{"stop", 5}}), "stop");
  rejected(RequestKind::kChat, chat({{"stop", {"ok", 5}}}), "stop");
  rejected(RequestKind::kChat, chat({{"stop", ""}}), "stop");
  rejected(RequestKind::kChat, chat({{"stop", std::string(257, 'x')}}), "stop");
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"stop", std::string(256, 'x')}})).stop.size(), 1u);
}

// Seeds: any integer, negative ones wrap to uint64.
TEST(RequestTest, Seed) {
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"seed", -1}})).sampling.seed, UINT64_MAX);
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"seed", 18446744073709551615ULL}})).sampling.seed, UINT64_MAX);
  rejected(RequestKind::kChat, chat({{"seed", "7"}}), "seed");
  rejected(RequestKind::kChat, chat({{"seed", 1.5}}), "seed");
}

// top_k: -1 (vLLM's "off") means 0; below -1 is out of range.
TEST(RequestTest, TopK) {
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"top_k", -1}})).sampling.top_k, 0);
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"top_k", 0}})).sampling.top_k, 0);
  rejected(RequestKind::kChat, chat({{"top_k", -2}}), "top_k");
  rejected(RequestKind::kChat, chat({{"top_k", 0.5}}), "top_k");
}

// Range edges that are allowed.
TEST(RequestTest, RangeEdgesAccepted) {
  ok(RequestKind::kChat, chat({{"temperature", 0}, {"top_p", 1}, {"presence_penalty", -2}, {"frequency_penalty", 2},
                            {"min_p", 1}, {"max_tokens", 1}, {"top_logprobs", 20}, {"logprobs", true}}));
  ok(RequestKind::kChat, chat({{"temperature", 2.0}, {"top_p", 1e-9}, {"repetition_penalty", 2}}));
  ok(RequestKind::kCompletion, completion({{"logprobs", 0}}));
  ok(RequestKind::kCompletion, completion({{"logprobs", 20}}));
}

// ---- rejected bodies --------------------------------------------------------------------------

// Not JSON, or JSON that is not an object: 400 without a param.
TEST(RequestTest, MalformedJson) {
  for (const char* body : {"", "{", "{\"model\": }", "not json", "{\"model\": \"m\",}", "{'model': 'm'}"}) {
    const std::string message = rejected(RequestKind::kChat, body, "");
    EXPECT_NE(message.find("JSON"), std::string::npos) << message;
  }
}

TEST(RequestTest, NonObjectBody) {
  for (const char* body : {"[]", "[{\"model\": \"m\"}]", "\"text\"", "42", "null", "true"}) {
    rejected(RequestKind::kChat, body, "");
    rejected(RequestKind::kCompletion, body, "");
  }
}

TEST(RequestTest, MissingModel) {
  rejected(RequestKind::kChat, R"({"messages": [{"role": "user", "content": "hi"}]})", "model");
  rejected(RequestKind::kCompletion, R"({"prompt": "hi"})", "model");
  rejected(RequestKind::kChat, chat({{"model", 5}}), "model");
}

TEST(RequestTest, MissingMessagesOrPrompt) {
  rejected(RequestKind::kChat, R"({"model": "m"})", "messages");
  rejected(RequestKind::kCompletion, R"({"model": "m"})", "prompt");
  rejected(RequestKind::kChat, chat({{"messages", json::array()}}), "messages");
  rejected(RequestKind::kChat, chat({{"messages", "hi"}}), "messages");
  rejected(RequestKind::kCompletion, completion({{"prompt", json::array()}}), "prompt");
  rejected(RequestKind::kCompletion, completion({{"prompt", 5}}), "prompt");
}

// Each message is checked: an object, a known role, content present (except for assistant).
TEST(RequestTest, InvalidMessages) {
  rejected(RequestKind::kChat, chat({{"messages", {"hi"}}}), "messages[0]");
  rejected(RequestKind::kChat, chat({{"messages", {{{"content", "hi"}}}}}), "messages[0].role");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "wizard"}, {"content", "hi"}}}}}), "messages[0].role");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", 1}, {"content", "hi"}}}}}), "messages[0].role");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", "a"}}, {{"role", "user"}}}}}), "messages[1].content");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", 5}}}}}), "messages[0].content");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", {"text"}}}}}}), "messages[0].content");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}}}}}}}}), "messages[0].content");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "assistant"}, {"tool_calls", {{{"id", "x"}}}}}}}}),
           "messages[0].tool_calls[0]");
}

// An image content part is refused (text only), naming the message's content.
TEST(RequestTest, ImageContentPartRejected) {
  const std::string message = rejected(
      RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "look"}},
                                                                           {{"type", "image_url"}, {"image_url", {{"url", "http://x/y.png"}}}}}}}}}}),
      "messages[0].content");
  EXPECT_NE(message.find("image_url"), std::string::npos) << message;
}

// Wrong JSON types.
TEST(RequestTest, WrongTypes) {
  rejected(RequestKind::kChat, chat({{"temperature", "hot"}}), "temperature");
  rejected(RequestKind::kChat, chat({{"max_tokens", 1.5}}), "max_tokens");
  rejected(RequestKind::kChat, chat({{"max_tokens", "100"}}), "max_tokens");
  rejected(RequestKind::kChat, chat({{"max_tokens", true}}), "max_tokens");
  rejected(RequestKind::kChat, chat({{"stream", "yes"}}), "stream");
  rejected(RequestKind::kChat, chat({{"stream", 1}}), "stream");
  rejected(RequestKind::kChat, chat({{"top_p", {0.5}}}), "top_p");
  rejected(RequestKind::kChat, chat({{"logprobs", 1}}), "logprobs");  // chat: a boolean
  rejected(RequestKind::kCompletion, completion({{"logprobs", true}}), "logprobs");  // completions: an integer
  rejected(RequestKind::kChat, chat({{"ignore_eos", "no"}}), "ignore_eos");
  rejected(RequestKind::kChat, chat({{"speculative", "no"}}), "speculative");
  rejected(RequestKind::kChat, chat({{"cache_salt", 5}}), "cache_salt");
  rejected(RequestKind::kChat, chat({{"user", 5}}), "user");
  rejected(RequestKind::kChat, chat({{"n", "1"}}), "n");
  rejected(RequestKind::kChat, chat({{"stream", true}, {"stream_options", "yes"}}), "stream_options");
  const std::string message = rejected(RequestKind::kChat, chat({{"temperature", "hot"}}), "temperature");
  EXPECT_NE(message.find("a string"), std::string::npos) << message;
}

// Numbers out of range.
TEST(RequestTest, OutOfRange) {
  rejected(RequestKind::kChat, chat({{"temperature", 3}}), "temperature");
  rejected(RequestKind::kChat, chat({{"temperature", -0.1}}), "temperature");
  rejected(RequestKind::kChat, chat({{"top_p", 0}}), "top_p");
  rejected(RequestKind::kChat, chat({{"top_p", 1.5}}), "top_p");
  rejected(RequestKind::kChat, chat({{"min_p", -0.5}}), "min_p");
  rejected(RequestKind::kChat, chat({{"logprobs", true}, {"top_logprobs", 21}}), "top_logprobs");
  rejected(RequestKind::kChat, chat({{"logprobs", true}, {"top_logprobs", -1}}), "top_logprobs");
  rejected(RequestKind::kChat, chat({{"presence_penalty", 5}}), "presence_penalty");
  rejected(RequestKind::kChat, chat({{"frequency_penalty", -3}}), "frequency_penalty");
  rejected(RequestKind::kChat, chat({{"repetition_penalty", 0}}), "repetition_penalty");
  rejected(RequestKind::kChat, chat({{"repetition_penalty", 2.5}}), "repetition_penalty");
  rejected(RequestKind::kChat, chat({{"max_tokens", 0}}), "max_tokens");
  rejected(RequestKind::kChat, chat({{"max_tokens", -5}}), "max_tokens");
  rejected(RequestKind::kChat, chat({{"max_tokens", 18446744073709551615ULL}}), "max_tokens");
  rejected(RequestKind::kChat, chat({{"max_tokens", (int64_t{1} << 30) + 1}}), "max_tokens");
  rejected(RequestKind::kCompletion, completion({{"logprobs", 21}}), "logprobs");
}

// top_logprobs needs logprobs: true.
TEST(RequestTest, TopLogprobsNeedsLogprobs) {
  rejected(RequestKind::kChat, chat({{"top_logprobs", 2}}), "top_logprobs");
  rejected(RequestKind::kChat, chat({{"top_logprobs", 2}, {"logprobs", false}}), "top_logprobs");
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"logprobs", true}})).top_logprobs, 0);
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"logprobs", false}})).top_logprobs, -1);
}

// n > 1 is not supported; n = 1 is.
TEST(RequestTest, NGreaterThanOne) {
  rejected(RequestKind::kChat, chat({{"n", 2}}), "n");
  rejected(RequestKind::kCompletion, completion({{"n", 2}}), "n");
  rejected(RequestKind::kChat, chat({{"n", 0}}), "n");
  ok(RequestKind::kChat, chat({{"n", 1}}));
}

// Unknown fields are refused by name, including fields of the other endpoint.
TEST(RequestTest, UnknownField) {
  rejected(RequestKind::kChat, chat({{"frobnicate", true}}), "frobnicate");
  rejected(RequestKind::kChat, chat({{"prompt", "x"}}), "prompt");
  rejected(RequestKind::kChat, chat({{"echo", false}}), "echo");
  rejected(RequestKind::kCompletion, completion({{"messages", json::array()}}), "messages");
  rejected(RequestKind::kCompletion, completion({{"top_logprobs", 1}}), "top_logprobs");
  rejected(RequestKind::kCompletion, completion({{"tools", json::array()}}), "tools");
  // Even when null.
  rejected(RequestKind::kChat, chat({{"frobnicate", nullptr}}), "frobnicate");
}

// Unsupported features: only their neutral values pass.
TEST(RequestTest, UnsupportedFeatures) {
  rejected(RequestKind::kChat, chat({{"functions", json::array()}}), "functions");
  rejected(RequestKind::kChat, chat({{"logit_bias", {{"50256", -100}}}}), "logit_bias");
  rejected(RequestKind::kChat, chat({{"response_format", "json"}}), "response_format");
  rejected(RequestKind::kCompletion, completion({{"echo", true}}), "echo");
  rejected(RequestKind::kCompletion, completion({{"suffix", "end"}}), "suffix");
  rejected(RequestKind::kCompletion, completion({{"best_of", 2}}), "best_of");
}

// stream_options only with "stream": true, and only its known keys.
TEST(RequestTest, StreamOptions) {
  rejected(RequestKind::kChat, chat({{"stream_options", {{"include_usage", true}}}}), "stream_options");
  rejected(RequestKind::kChat, chat({{"stream", false}, {"stream_options", {{"include_usage", true}}}}), "stream_options");
  rejected(RequestKind::kChat, chat({{"stream", true}, {"stream_options", {{"bogus", true}}}}), "stream_options");
  const auto r = ok(RequestKind::kChat, chat({{"stream", true}, {"stream_options", {{"include_usage", false}, {"continuous_usage_stats", true}}}}));
  EXPECT_TRUE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_TRUE(ok(RequestKind::kCompletion, completion({{"stream", true}, {"stream_options", {{"include_usage", true}}}})).include_usage);
}

// A non-boolean include_usage should be reported as a stream_options field.
TEST(RequestTest, StreamOptionsIncludeUsageParam) {
  rejected(RequestKind::kChat, chat({{"stream", true}, {"stream_options", {{"include_usage", "yes"}}}}),
           "stream_options.include_usage");
}

// Several prompts in one completion request are refused.
TEST(RequestTest, SeveralPromptsRejected) {
  const std::string message = rejected(RequestKind::kCompletion, completion({{"prompt", {"one", "two"}}}), "prompt");
  EXPECT_NE(message.find("several"), std::string::npos) << message;
  rejected(RequestKind::kCompletion, completion({{"prompt", json::parse("[[1, 2], [3, 4]]")}}), "prompt");
}

// Malformed values inside otherwise valid JSON must give a 400, never escape as an exception (the
// HTTP server calls this on its I/O threads and catches nothing).
TEST(RequestTest, ResponseFormatWithNonStringTypeIsA400) {
  for (const char* type : {"1", "null", "{}", "[\"text\"]"}) {
    const std::string body = chat({{"response_format", json::parse(std::string("{\"type\": ") + type + "}")}});
    EXPECT_NO_THROW({
      auto r = parse_openai_request(RequestKind::kChat, body);
      EXPECT_FALSE(r.has_value());
      if (!r) {
        EXPECT_EQ(r.error().param, "response_format");
      }
    }) << body;
  }
}

TEST(RequestTest, NumberOverflowIsA400) {
  const std::string body = R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400})";
  EXPECT_NO_THROW({
    auto r = parse_openai_request(RequestKind::kChat, body);
    EXPECT_FALSE(r.has_value());
    if (!r) {
      EXPECT_EQ(r.error().status, 400);
    }
  });
}

// OpenRouter's routing fields: `models` (ordered fallbacks, the primary model left out) and `provider`.
TEST(RequestTest, OpenRouterRoutingFields) {
  const auto r = ok(RequestKind::kChat, chat({{"models", {"m", "backup-1", "backup-2"}},
                                              {"provider", {{"order", {"a", "b"}}, {"only", {"a", "b", "c"}}, {"ignore", {"d"}},
                                                            {"allow_fallbacks", false}, {"sort", "latency"},
                                                            {"max_price", {{"prompt", 1.5}, {"completion", 3}}}}}}));
  EXPECT_EQ(r.fallback_models, (std::vector<std::string>{"backup-1", "backup-2"}));
  EXPECT_EQ(r.provider.order, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.provider.only.size(), 3u);
  EXPECT_EQ(r.provider.ignore, std::vector<std::string>{"d"});
  EXPECT_FALSE(r.provider.allow_fallbacks);
  EXPECT_EQ(r.provider.sort, "latency");
  EXPECT_DOUBLE_EQ(*r.provider.max_prompt_price, 1.5);
  EXPECT_DOUBLE_EQ(*r.provider.max_completion_price, 3.0);
  rejected(RequestKind::kChat, chat({{"models", "backup"}}), "models");
  rejected(RequestKind::kChat, chat({{"models", {1}}}), "models");
  rejected(RequestKind::kChat, chat({{"provider", {{"sort", "cheapest"}}}}), "provider.sort");
  rejected(RequestKind::kChat, chat({{"provider", {{"orderr", {"a"}}}}}), "provider.orderr");
  rejected(RequestKind::kChat, chat({{"provider", {{"max_price", {{"request", 1}}}}}}), "provider.max_price.request");
  rejected(RequestKind::kChat, chat({{"provider", {{"max_price", {{"prompt", -1}}}}}}), "prompt");
}

// OpenRouter takes `models` alone: its first entry is the primary. Without either: 400 naming model.
TEST(RequestTest, ModelsAloneNameThePrimaryFirst) {
  json body = json::parse(chat({{"models", {"first", "second", "first"}}}));
  body.erase("model");
  const auto r = ok(RequestKind::kChat, body.dump());
  EXPECT_EQ(r.model, "first");
  EXPECT_EQ(r.fallback_models, std::vector<std::string>{"second"});
  body.erase("models");
  EXPECT_NE(rejected(RequestKind::kChat, body.dump(), "model").find("'models'"), std::string::npos);
  body["models"] = json::array();
  rejected(RequestKind::kChat, body.dump(), "model");
  rejected(RequestKind::kChat, chat({{"model", ""}}), "model");
}

// Tools, tool_choice, parallel_tool_calls and response_format become the neutral request's; an
// agent's history (assistant tool_calls, tool results) stays in OpenAI's message shape.
TEST(RequestTest, ToolsToolChoiceAndResponseFormat) {
  const json weather = {{"type", "function"},
                        {"function", {{"name", "get_weather"}, {"description", "Weather in a city"}, {"strict", true},
                                      {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}, {"required", {"city"}}}}}}};
  const json history = {{{"role", "user"}, {"content", "Weather in Paris?"}},
                        {{"role", "assistant"}, {"content", nullptr},
                         {"tool_calls", {{{"id", "call_1"}, {"type", "function"}, {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\"}"}}}}}}},
                        {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "18C"}}};
  auto r = ok(RequestKind::kChat, chat({{"messages", history}, {"tools", {weather}}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
                                        {"parallel_tool_calls", false}}));
  ASSERT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "Weather in a city");
  EXPECT_TRUE(r.tools[0].strict);
  EXPECT_EQ(r.tools[0].parameters["required"], json::array({"city"}));
  EXPECT_EQ(r.tool_choice.mode, ToolChoice::Mode::kNamed);
  EXPECT_EQ(r.tool_choice.name, "get_weather");
  EXPECT_FALSE(r.tool_choice.parallel);
  EXPECT_TRUE(r.wants_tools());
  EXPECT_EQ(r.messages[1]["content"], "");
  EXPECT_EQ(r.messages[1]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
  EXPECT_EQ(r.messages[2]["role"], "tool");
  EXPECT_EQ(r.messages[2]["tool_call_id"], "call_1");
  r = ok(RequestKind::kChat, chat({{"tools", {weather}}, {"tool_choice", "none"}}));
  EXPECT_FALSE(r.wants_tools());
  r = ok(RequestKind::kChat, chat({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "answer"}, {"strict", true},
                                                                                              {"schema", {{"type", "object"}}}}}}}}));
  EXPECT_EQ(r.response_format.kind, ResponseFormat::Kind::kJsonSchema);
  EXPECT_EQ(r.response_format.name, "answer");
  EXPECT_TRUE(r.response_format.strict);
  EXPECT_TRUE(r.wants_json());
  EXPECT_EQ(ok(RequestKind::kChat, chat({{"response_format", {{"type", "json_object"}}}})).response_format.kind, ResponseFormat::Kind::kJsonObject);

  // Bad input names its field.
  rejected(RequestKind::kChat, chat({{"tools", "yes"}}), "tools");
  rejected(RequestKind::kChat, chat({{"tools", {{{"type", "retrieval"}}}}}), "tools[0].type");
  rejected(RequestKind::kChat, chat({{"tools", {{{"type", "function"}, {"function", {{"name", "has space"}}}}}}}), "tools[0].function.name");
  rejected(RequestKind::kChat, chat({{"tools", {{{"type", "function"}, {"function", {{"name", std::string(65, 'a')}}}}}}}), "tools[0].function.name");
  rejected(RequestKind::kChat, chat({{"tools", {weather, weather}}}), "tools[1].function.name");
  rejected(RequestKind::kChat, chat({{"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", "{}"}}}}}}}), "tools[0].function.parameters");
  rejected(RequestKind::kChat, chat({{"tool_choice", "auto"}}), "tool_choice");  // no tools
  rejected(RequestKind::kChat, chat({{"tools", {weather}}, {"tool_choice", "sometimes"}}), "tool_choice");
  rejected(RequestKind::kChat, chat({{"tools", {weather}}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "other"}}}}}}), "tool_choice");
  rejected(RequestKind::kChat, chat({{"parallel_tool_calls", "no"}}), "parallel_tool_calls");
  rejected(RequestKind::kChat, chat({{"response_format", {{"type", "json_schema"}}}}), "response_format.json_schema");
  rejected(RequestKind::kChat, chat({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "a b"}}}}}}), "response_format.json_schema.name");
  rejected(RequestKind::kChat, chat({{"response_format", {{"type", "yaml"}}}}), "response_format.type");
  // A tool result must answer a call an earlier assistant message made.
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "tool"}, {"tool_call_id", "call_9"}, {"content", "x"}}}}}), "messages[0].tool_call_id");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "tool"}, {"content", "x"}}}}}), "messages[0].tool_call_id");
  rejected(RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", "x"}, {"tool_calls", json::array()}}}}}), "messages[0].tool_calls");
  // An assistant's empty tool_calls (some clients echo it back) says nothing and is not kept.
  r = ok(RequestKind::kChat, chat({{"messages", {{{"role", "user"}, {"content", "x"}}, {{"role", "assistant"}, {"content", "y"}, {"tool_calls", json::array()}},
                                                {{"role", "user"}, {"content", "z"}}}}}));
  EXPECT_FALSE(r.messages[1].contains("tool_calls"));
}

// prompt_cache_retention "24h" retains the whole prompt for a day; "in_memory" is the plain cache.
TEST(RequestTest, PromptCacheRetentionAndKey) {
  auto r = ok(RequestKind::kChat, chat({{"prompt_cache_retention", "24h"}, {"prompt_cache_key", "session-7"}}));
  ASSERT_EQ(r.cache_breakpoints.size(), 1u);
  EXPECT_EQ(r.cache_breakpoints[0].message, -1);
  EXPECT_EQ(r.cache_breakpoints[0].ttl_s, 86400);
  EXPECT_EQ(r.prompt_cache_key, "session-7");
  EXPECT_TRUE(ok(RequestKind::kCompletion, completion({{"prompt_cache_retention", "in_memory"}})).cache_breakpoints.empty());
  EXPECT_EQ(ok(RequestKind::kCompletion, completion({{"prompt_cache_retention", "24h"}})).cache_breakpoints.size(), 1u);
  rejected(RequestKind::kChat, chat({{"prompt_cache_retention", "forever"}}), "prompt_cache_retention");
  rejected(RequestKind::kChat, chat({{"prompt_cache_retention", 24}}), "prompt_cache_retention");
  rejected(RequestKind::kChat, chat({{"prompt_cache_key", std::string(1025, 'k')}}), "prompt_cache_key");
}

// ApiError serialises as OpenAI's {"error": {...}} with null param/code when empty.
TEST(RequestTest, ErrorJson) {
  auto r = parse_openai_request(RequestKind::kChat, chat({{"temperature", 3}}));
  ASSERT_FALSE(r.has_value());
  const json j = OpenAiRenderer::error_json(r.error());
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_TRUE(j["error"]["message"].is_string());
  auto bad = parse_openai_request(RequestKind::kChat, "[]");
  ASSERT_FALSE(bad.has_value());
  EXPECT_TRUE(OpenAiRenderer::error_json(bad.error())["error"]["param"].is_null());
}

// Tool calls in OpenAI's shapes: streamed as delta.tool_calls pieces (the first with id, type and
// name), whole as message.tool_calls with null content; finish_reason "tool_calls".
TEST(OpenAiRenderer, ToolCallsStreamedAndWhole) {
  Request request = ok(RequestKind::kChat, chat());
  OpenAiRenderer renderer(request);
  Event first;
  first.model = "m";
  renderer.stream_start(first);
  Event piece;
  piece.tool_calls = {{.index = 0, .id = "call_1", .name = "add", .arguments = ""}};
  std::string wire = renderer.stream_event(piece);
  json chunk = json::parse(wire.substr(6, wire.find('\n') - 6));
  EXPECT_EQ(chunk["choices"][0]["delta"]["tool_calls"],
            json::parse(R"([{"index":0,"id":"call_1","type":"function","function":{"name":"add","arguments":""}}])"));
  piece.tool_calls = {{.index = 0, .id = "", .name = "", .arguments = "{\"a\":2}"}};
  wire = renderer.stream_event(piece);
  chunk = json::parse(wire.substr(6, wire.find('\n') - 6));
  EXPECT_EQ(chunk["choices"][0]["delta"]["tool_calls"], json::parse(R"([{"index":0,"function":{"arguments":"{\"a\":2}"}}])"));
  Event last;
  last.finished = true;
  last.finish_reason = "tool_calls";
  const json full = json::parse(renderer.full_response({.text = "", .logprobs = {}, .tool_calls = {{.id = "call_1", .name = "add", .arguments = "{}"}}}, last));
  EXPECT_TRUE(full["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(full["choices"][0]["message"]["tool_calls"],
            json::parse(R"([{"id":"call_1","type":"function","function":{"name":"add","arguments":"{}"}}])"));
  EXPECT_EQ(full["choices"][0]["finish_reason"], "tool_calls");
}

}  // namespace
}  // namespace tern::wire
