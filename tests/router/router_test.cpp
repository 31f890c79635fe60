// The router over real remote providers against a fake upstream that injects faults: retries,
// fallbacks, the circuit breaker, cost, provider preferences, and that nothing is sent twice once it
// began streaming. No model needed.

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "router/remote_provider.h"
#include "router/router.h"
#include "upstream_fixture.h"

namespace tern::router {
namespace {

using namespace std::chrono_literals;
using testing::UpstreamFixture;

/// Everything one request produced.
struct Outcome {
  std::string text;
  std::vector<wire::Event> events;
  std::optional<wire::ApiError> refused;  ///< submit() itself failed
  wire::Event last;
  double seconds = 0;
};

class Collector {
 public:
  wire::EventSink sink() {
    return [this](wire::Event&& e) {
      std::lock_guard lock(mutex_);
      outcome_.text += e.text;
      const bool finished = e.finished;
      outcome_.events.push_back(e);
      if (finished) {
        outcome_.last = std::move(e);
        done_ = true;
        cv_.notify_all();
      }
    };
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  Outcome outcome() {
    std::lock_guard lock(mutex_);
    return outcome_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  Outcome outcome_;
};

wire::Request chat(const std::string& model) {
  wire::Request r;
  r.kind = wire::RequestKind::kChat;
  r.model = model;
  r.messages = nlohmann::ordered_json::array({{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hello"}}});
  r.max_tokens = 16;
  return r;
}

class RouterTest : public ::testing::Test {
 protected:
  /// A remote deployment `name` on the fixture whose upstream model (the fault) is `behaviour`.
  void deploy(const std::string& name, const std::string& behaviour, RemoteKind kind = RemoteKind::kOpenAi, Prices prices = {},
              int retries = 1, int breaker_failures = 5, std::string health_path = {}, std::map<std::string, std::string> labels = {}) {
    RemoteConfig remote{.name = name, .kind = kind, .base_url = upstream.base_url(), .api_key = "sk-test", .upstream_model = behaviour, .ca_file = {},
                        .max_connections = 8, .first_byte_timeout = 300ms, .timeout = 10s, .default_max_tokens = 64,
                        .health_path = std::move(health_path), .health_interval = 100ms};
    auto provider = make_remote_provider(remote);
    ASSERT_TRUE(provider) << provider.error().message;
    DeploymentConfig d{.name = name, .kind = kind == RemoteKind::kOpenAi ? "openai" : "anthropic", .prices = prices,
                       .max_concurrency = 0, .retries = retries, .breaker = {}, .labels = std::move(labels), .kv_source = {}};
    d.breaker.failures_to_open = breaker_failures;
    router.add_deployment(d, std::move(*provider));
  }

  Outcome run(const wire::Request& request, std::chrono::milliseconds timeout = 10s) {
    Collector collector;
    const auto start = std::chrono::steady_clock::now();
    auto call = router.submit(request, collector.sink());
    if (!call) {
      Outcome out;
      out.refused = call.error();
      return out;
    }
    EXPECT_TRUE(collector.wait(timeout)) << "no final event";
    Outcome out = collector.outcome();
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return out;
  }

  UpstreamFixture upstream{4};
  Router router;
};

TEST_F(RouterTest, StreamsFromAnOpenAiUpstreamWithUsageAndCost) {
  deploy("a", "ok", RemoteKind::kOpenAi, {.input = 1.0, .cached_input = 0.5, .cache_write = 0, .output = 2.0});
  router.add_model("m", {"a"}, Policy::kPrice);
  const Outcome out = run(chat("m"));
  ASSERT_FALSE(out.refused);
  EXPECT_EQ(out.text, " w0 w1 w2 w3");
  EXPECT_FALSE(out.last.error);
  EXPECT_EQ(out.last.finish_reason, "stop");
  EXPECT_EQ(out.last.model, "m");
  EXPECT_EQ(out.last.usage.prompt_tokens, 12);
  EXPECT_EQ(out.last.usage.completion_tokens, 4);
  EXPECT_EQ(out.last.usage.cached_tokens, 4);
  // 8 uncached at $1/M, 4 cached at $0.5/M, 4 output at $2/M.
  ASSERT_TRUE(out.last.usage.cost_usd);
  EXPECT_NEAR(*out.last.usage.cost_usd, (8 * 1.0 + 4 * 0.5 + 4 * 2.0) / 1e6, 1e-15);
  // The upstream got the OpenAI schema with its own model name, streaming, and the key.
  const auto requests = upstream.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].path, "/v1/chat/completions");
  EXPECT_EQ(requests[0].authorization, "Bearer sk-test");
  const auto body = nlohmann::json::parse(requests[0].body);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["messages"].size(), 2u);
  EXPECT_EQ(body["max_tokens"], 16);
}

TEST_F(RouterTest, TranslatesToAnAnthropicUpstream) {
  deploy("claude", "ok", RemoteKind::kAnthropic, {.input = 3.0, .cached_input = 0.3, .cache_write = 3.75, .output = 15.0});
  router.add_model("m", {"claude"}, Policy::kPrice);
  const Outcome out = run(chat("m"));
  ASSERT_FALSE(out.refused);
  EXPECT_EQ(out.text, " w0 w1 w2 w3");
  EXPECT_EQ(out.last.finish_reason, "stop");
  // input 7 + cache read 3 + cache write 2 = 12 prompt tokens.
  EXPECT_EQ(out.last.usage.prompt_tokens, 12);
  EXPECT_EQ(out.last.usage.cached_tokens, 3);
  EXPECT_EQ(out.last.usage.cache_write_tokens, 2);
  EXPECT_EQ(out.last.usage.completion_tokens, 4);
  EXPECT_NEAR(*out.last.usage.cost_usd, (7 * 3.0 + 3 * 0.3 + 2 * 3.75 + 4 * 15.0) / 1e6, 1e-15);
  const auto requests = upstream.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].path, "/v1/messages");
  EXPECT_EQ(requests[0].authorization, "sk-test");
  const auto body = nlohmann::json::parse(requests[0].body);
  // The system message moves to Anthropic's top-level field; text goes as blocks (where cache_control
  // marks would sit).
  EXPECT_EQ(body["system"], nlohmann::json::parse(R"([{"type": "text", "text": "be brief"}])"));
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(body["max_tokens"], 16);
}

TEST_F(RouterTest, RetriesA500ThenFallsBackToTheNextDeployment) {
  deploy("broken", "fail-500", RemoteKind::kOpenAi, {.input = 0.1, .cached_input = 0, .cache_write = 0, .output = 0.1}, /*retries=*/1);
  deploy("good", "ok", RemoteKind::kOpenAi, {.input = 1, .cached_input = 0, .cache_write = 0, .output = 1});
  router.add_model("m", {"broken", "good"}, Policy::kPrice);  // cheapest first: broken
  const Outcome out = run(chat("m"));
  ASSERT_FALSE(out.refused);
  EXPECT_FALSE(out.last.error);
  EXPECT_EQ(out.text, " w0 w1 w2 w3");
  EXPECT_EQ(upstream.count("fail-500"), 2);  // the first try and one retry
  EXPECT_EQ(upstream.count("ok"), 1);
  // Only the answer reached the sink: no event from the failed attempts.
  for (const auto& e : out.events) EXPECT_FALSE(e.error);
}

TEST_F(RouterTest, HonoursRetryAfterOnA429) {
  deploy("limited", "rate-limit-once", RemoteKind::kOpenAi, {}, /*retries=*/1);
  router.add_model("m", {"limited"}, Policy::kPrice);
  const Outcome out = run(chat("m"));
  ASSERT_FALSE(out.refused);
  EXPECT_FALSE(out.last.error);
  EXPECT_EQ(upstream.count("rate-limit-once"), 2);
  EXPECT_GE(out.seconds, 0.95);  // Retry-After: 1
}

TEST_F(RouterTest, AHangBeforeTheFirstByteTimesOutAndFallsBack) {
  deploy("stuck", "hang", RemoteKind::kOpenAi, {}, /*retries=*/0);
  deploy("good", "ok");
  router.add_model("m", {"stuck", "good"}, Policy::kLeastOutstanding);
  const Outcome out = run(chat("m"));
  EXPECT_FALSE(out.last.error);
  EXPECT_EQ(out.text, " w0 w1 w2 w3");
  EXPECT_EQ(upstream.count("hang"), 1);
  EXPECT_TRUE(upstream.wait_client_left("hang", 2000));  // the timed-out upstream request was closed
}

TEST_F(RouterTest, AResetMidStreamEndsTheStreamWithAnErrorAndIsNotResent) {
  deploy("flaky", "reset-midstream");
  deploy("good", "ok");
  router.add_model("m", {"flaky", "good"}, Policy::kLeastOutstanding);
  const Outcome out = run(chat("m"));
  EXPECT_EQ(out.text, " w0 w1");
  ASSERT_TRUE(out.last.error);
  EXPECT_NE(out.last.error->message.find("mid-stream"), std::string::npos) << out.last.error->message;
  EXPECT_EQ(upstream.count("reset-midstream"), 1);
  EXPECT_EQ(upstream.count("ok"), 0);  // committed: no second upstream request for it
}

TEST_F(RouterTest, MalformedStreamsAreErrorsNeverSilentTruncation) {
  deploy("bad-first", "bad-json-first", RemoteKind::kOpenAi, {}, 0);
  deploy("good", "ok");
  router.add_model("first", {"bad-first", "good"}, Policy::kLeastOutstanding);
  const Outcome first = run(chat("first"));
  EXPECT_FALSE(first.last.error);  // nothing reached the client yet: fell back
  EXPECT_EQ(first.text, " w0 w1 w2 w3");

  deploy("bad-mid", "bad-json-midstream");
  deploy("cut", "truncated");
  router.add_model("mid", {"bad-mid"}, Policy::kPrice);
  router.add_model("cut", {"cut"}, Policy::kPrice);
  const Outcome mid = run(chat("mid"));
  EXPECT_EQ(mid.text, " w0 w1");
  ASSERT_TRUE(mid.last.error);
  EXPECT_NE(mid.last.error->message.find("malformed"), std::string::npos) << mid.last.error->message;
  const Outcome cut = run(chat("cut"));
  EXPECT_EQ(cut.text, " w0 w1");
  ASSERT_TRUE(cut.last.error);
  EXPECT_NE(cut.last.error->message.find("without finishing"), std::string::npos) << cut.last.error->message;
}

TEST_F(RouterTest, BrokenHttpFramingEndsTheStreamWithAnError) {
  deploy("garbled", "bad-chunking");
  router.add_model("m", {"garbled"}, Policy::kPrice);
  const Outcome out = run(chat("m"));
  EXPECT_EQ(out.text, " w0");
  ASSERT_TRUE(out.last.error);
  EXPECT_NE(out.last.error->message.find("malformed chunked encoding"), std::string::npos) << out.last.error->message;
  EXPECT_EQ(upstream.count("bad-chunking"), 1);
}

TEST_F(RouterTest, ASlowTrickleIsRelayedAsItArrivesNotTimedOut) {
  deploy("slow", "trickle");  // chunks 200 ms apart; the first byte comes at once, so no first-byte timeout
  router.add_model("m", {"slow"}, Policy::kPrice);
  const Outcome out = run(chat("m"));
  EXPECT_FALSE(out.last.error);
  EXPECT_EQ(out.text, " w0 w1 w2 w3");
  EXPECT_GE(out.seconds, 0.55);
  int text_events = 0;
  for (const auto& e : out.events) text_events += e.text.empty() ? 0 : 1;
  EXPECT_GE(text_events, 4);  // relayed chunk by chunk, not buffered to the end
}

TEST_F(RouterTest, ARequestFaultIsPassedThroughWithoutRetryOrFallback) {
  deploy("strict", "fail-400", RemoteKind::kOpenAi, {}, 3);
  deploy("good", "ok");
  router.add_model("m", {"strict", "good"}, Policy::kLeastOutstanding);
  const Outcome out = run(chat("m"));
  ASSERT_TRUE(out.last.error);
  EXPECT_EQ(out.last.error->status, 400);
  // The upstream's own error, as if the client had asked it (not wrapped in an upstream_error message).
  EXPECT_EQ(out.last.error->message, "injected 400");
  EXPECT_EQ(out.last.error->param, "messages");
  EXPECT_EQ(out.last.error->code, "too_big");
  EXPECT_EQ(upstream.count("fail-400"), 1);
  EXPECT_EQ(upstream.count("ok"), 0);
}

TEST_F(RouterTest, TheBreakerOpensAfterRepeatedFailuresAndSkipsTheDeployment) {
  deploy("broken", "fail-500", RemoteKind::kOpenAi, {}, /*retries=*/0, /*breaker_failures=*/2);
  deploy("good", "ok", RemoteKind::kOpenAi, {.input = 5, .cached_input = 0, .cache_write = 0, .output = 5});
  router.add_model("m", {"broken", "good"}, Policy::kPrice);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(run(chat("m")).last.error);
  EXPECT_EQ(upstream.count("fail-500"), 2);  // open after two failures: later requests skip it
  EXPECT_EQ(upstream.count("ok"), 4);
  bool saw_open = false;
  for (const auto& s : router.stats()) saw_open |= s.name == "broken" && s.breaker == "open";
  EXPECT_TRUE(saw_open);
}

TEST_F(RouterTest, ModelsFallbackListAndProviderPreferences) {
  deploy("cheap", "ok", RemoteKind::kOpenAi, {.input = 0.1, .cached_input = 0, .cache_write = 0, .output = 0.1});
  deploy("pricey", "ok", RemoteKind::kAnthropic, {.input = 10, .cached_input = 0, .cache_write = 0, .output = 10});
  deploy("dead", "fail-500", RemoteKind::kOpenAi, {}, 0);
  router.add_model("m", {"cheap", "pricey"}, Policy::kPrice);
  router.add_model("down", {"dead"}, Policy::kPrice);

  wire::Request r = chat("m");
  r.provider.order = {"pricey"};
  EXPECT_EQ(run(r).last.usage.cache_write_tokens, 2);  // the Anthropic fixture answered
  r = chat("m");
  r.provider.ignore = {"cheap"};
  EXPECT_EQ(run(r).last.usage.cache_write_tokens, 2);
  r = chat("m");
  r.provider.max_completion_price = 1.0;
  r.provider.order = {"pricey"};
  EXPECT_EQ(run(r).last.usage.cache_write_tokens, 0);  // pricey is over the price cap
  r = chat("m");
  r.provider.only = {"nowhere"};
  ASSERT_TRUE(run(r).refused);

  // `models`: the first model's only deployment fails, the next model answers; `model` says which.
  r = chat("down");
  r.fallback_models = {"m"};
  const Outcome out = run(r);
  EXPECT_FALSE(out.last.error);
  EXPECT_EQ(out.last.model, "m");
  r = chat("down");
  r.fallback_models = {"m"};
  r.provider.allow_fallbacks = false;
  EXPECT_TRUE(run(r).last.error || run(r).refused);

  r = chat("no-such-model");
  const Outcome missing = run(r);
  ASSERT_TRUE(missing.refused);
  EXPECT_EQ(missing.refused->status, 404);
  EXPECT_EQ(missing.refused->code, "model_not_found");

  // An unknown name in the list is passed over (OpenRouter: any error moves to the next model); a list
  // of which no name exists is refused naming the first.
  r = chat("no-such-model");
  r.fallback_models = {"m"};
  const Outcome passed_over = run(r);
  ASSERT_FALSE(passed_over.refused);
  EXPECT_FALSE(passed_over.last.error);
  EXPECT_EQ(passed_over.last.model, "m");
  r = chat("no-such-model");
  r.fallback_models = {"nor-this-one"};
  const Outcome none = run(r);
  ASSERT_TRUE(none.refused);
  EXPECT_EQ(none.refused->status, 404);
  EXPECT_EQ(none.refused->param, "model");
  EXPECT_NE(none.refused->message.find("'no-such-model'"), std::string::npos) << none.refused->message;
}

// Placement policies: a request never goes to a deployment its tenant's policy refuses - not first,
// not as a retry, not as a fallback (even when the allowed one fails) - and a refusal names the
// policy; the answer says where it ran.
TEST_F(RouterTest, PlacementPoliciesKeepRequestsWhereTheirTenantMayRun) {
  deploy("us", "ok", RemoteKind::kOpenAi, {.input = 0.1, .cached_input = 0, .cache_write = 0, .output = 0.1}, 1, 5, {},
         {{"region", "us-east"}});
  deploy("eu", "ok", RemoteKind::kOpenAi, {.input = 1, .cached_input = 0, .cache_write = 0, .output = 1}, 1, 5, {},
         {{"region", "eu-west"}, {"compliance", "gdpr"}});
  deploy("eu-broken", "fail-500", RemoteKind::kOpenAi, {.input = 0.5, .cached_input = 0, .cache_write = 0, .output = 0.5}, 0, 5, {},
         {{"region", "eu-west"}});
  router.add_model("m", {"us", "eu"}, Policy::kPrice);  // cheapest first: us
  router.add_model("eu-only-broken", {"eu-broken", "us"}, Policy::kPrice);

  wire::Request r = chat("m");
  EXPECT_EQ(run(r).last.deployment, "us");
  EXPECT_EQ(run(r).last.region, "us-east");
  r.placement = {{.owner = "org acme", .regions = {"eu-west"}, .labels = {}, .never_remote = false}};
  Outcome out = run(r);
  EXPECT_EQ(out.last.deployment, "eu") << "the cheaper deployment is outside the policy";
  EXPECT_EQ(out.last.region, "eu-west");
  r.placement.push_back({.owner = "key k1", .regions = {}, .labels = {{"compliance", "gdpr"}}, .never_remote = false});
  EXPECT_EQ(run(r).last.deployment, "eu") << "every policy applies";

  // The only allowed deployment fails: the request fails rather than fall back outside the policy.
  r = chat("eu-only-broken");
  r.placement = {{.owner = "org acme", .regions = {"eu-west"}, .labels = {}, .never_remote = false}};
  out = run(r);
  ASSERT_FALSE(out.refused);
  ASSERT_TRUE(out.last.error);
  EXPECT_EQ(upstream.count("ok"), 4) << "'us' was never tried for it (4: the requests above)";

  // Nothing allowed: refused, naming the policy and why.
  r = chat("m");
  r.placement = {{.owner = "org acme", .regions = {}, .labels = {}, .never_remote = true}};
  out = run(r);
  ASSERT_TRUE(out.refused);
  EXPECT_EQ(out.refused->status, 403);
  EXPECT_EQ(out.refused->code, "placement_policy");
  EXPECT_NE(out.refused->message.find("org acme's placement policy (never remote)"), std::string::npos) << out.refused->message;
  EXPECT_NE(out.refused->message.find("'us' is remote (openai)"), std::string::npos) << out.refused->message;
  // Fallback models obey it too.
  r = chat("eu-only-broken");
  r.fallback_models = {"m"};
  r.placement = {{.owner = "key k2", .regions = {"us-east"}, .labels = {}, .never_remote = false}};
  EXPECT_EQ(run(r).last.deployment, "us");
}

TEST(Placement, MatchesRegionsLabelsAndKind) {
  const DeploymentConfig local{.name = "l", .kind = "local", .prices = {}, .max_concurrency = 0, .retries = 0, .breaker = {},
                               .labels = {{"region", "eu-west"}}, .kv_source = {}};
  const DeploymentConfig adapter{.name = "l:a", .kind = "lora", .prices = {}, .max_concurrency = 0, .retries = 0, .breaker = {}, .labels = {}, .kv_source = {}};
  const DeploymentConfig remote{.name = "r", .kind = "anthropic", .prices = {}, .max_concurrency = 0, .retries = 0, .breaker = {}, .labels = {}, .kv_source = {}};
  const wire::PlacementPolicy local_only{.owner = "org o", .regions = {}, .labels = {}, .never_remote = true};
  EXPECT_TRUE(placement_allows(local_only, local));
  EXPECT_TRUE(placement_allows(local_only, adapter)) << "an adapter runs on its local base model";
  std::string why;
  EXPECT_FALSE(placement_allows(local_only, remote, &why));
  EXPECT_EQ(why, "'r' is remote (anthropic)");
  const wire::PlacementPolicy eu{.owner = "org o", .regions = {"eu-west", "eu-central"}, .labels = {{"tier", "gold"}}, .never_remote = false};
  EXPECT_FALSE(placement_allows(eu, remote, &why));
  EXPECT_EQ(why, "'r' is in no stated region");
  EXPECT_FALSE(placement_allows(eu, local, &why));
  EXPECT_EQ(why, "'l' has no tier label");
  EXPECT_EQ(describe_placement(eu), "regions eu-west, eu-central; labels tier=gold");
}

TEST_F(RouterTest, AnUnhealthyReplicaIsTriedLast) {
  deploy("sick", "ok", RemoteKind::kOpenAi, {.input = 0.1, .cached_input = 0, .cache_write = 0, .output = 0.1}, 1, 5, "/unhealthy");
  deploy("well", "ok", RemoteKind::kOpenAi, {.input = 1, .cached_input = 0, .cache_write = 0, .output = 1}, 1, 5, "/ready");
  router.add_model("m", {"sick", "well"}, Policy::kPrice);  // the cheaper one is sick
  std::this_thread::sleep_for(400ms);                         // a few health checks
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(chat("m")).last.deployment, "well");
}

TEST_F(RouterTest, PrefixAffinityKeepsAPromptOnOneReplicaAndSpreadsOthers) {
  for (const char* name : {"r1", "r2", "r3"}) deploy(name, "ok");
  router.add_model("m", {"r1", "r2", "r3"}, Policy::kPrefixAffinity);
  std::map<std::string, std::set<std::string>> replicas_by_prompt;
  for (int round = 0; round < 3; ++round) {
    for (int p = 0; p < 12; ++p) {
      wire::Request r = chat("m");
      r.messages[1]["content"] = "shared system prompt number " + std::to_string(p);
      replicas_by_prompt[std::to_string(p)].insert(run(r).last.deployment);
    }
  }
  std::set<std::string> used;
  for (const auto& [prompt, replicas] : replicas_by_prompt) {
    EXPECT_EQ(replicas.size(), 1u) << "prompt " << prompt << " moved between replicas";  // sequential: no load skew
    used.insert(*replicas.begin());
  }
  EXPECT_GE(used.size(), 2u);  // 12 prompts over 3 replicas do not all hash to one
}

// OpenAI's prompt_cache_key groups requests whose prompts differ (a session, a tenant) on one replica.
TEST_F(RouterTest, PrefixAffinityRoutesByPromptCacheKeyWhenGiven) {
  for (const char* name : {"r1", "r2", "r3"}) deploy(name, "ok");
  router.add_model("m", {"r1", "r2", "r3"}, Policy::kPrefixAffinity);
  std::map<std::string, std::set<std::string>> replicas_by_key;
  for (int p = 0; p < 24; ++p) {
    wire::Request r = chat("m");
    r.messages[1]["content"] = "a different prompt every time " + std::to_string(p);
    r.prompt_cache_key = "session-" + std::to_string(p % 6);
    replicas_by_key[r.prompt_cache_key].insert(run(r).last.deployment);
  }
  std::set<std::string> used;
  for (const auto& [key, replicas] : replicas_by_key) {
    EXPECT_EQ(replicas.size(), 1u) << key << " moved between replicas";
    used.insert(*replicas.begin());
  }
  EXPECT_GE(used.size(), 2u);
}

TEST_F(RouterTest, CancellingClosesTheUpstreamRequestAndStillReportsTheEnd) {
  // The gateway drops its handle as soon as it cancels (the client left); the upstream request must
  // close, and the last event, with the usage the ledger bills, must still arrive.
  deploy("slow", "hang");
  router.add_model("m", {"slow"}, Policy::kPrice);
  Collector collector;
  auto call = router.submit(chat("m"), collector.sink());
  ASSERT_TRUE(call);
  std::this_thread::sleep_for(100ms);
  (*call)->cancel();
  call->reset();
  EXPECT_TRUE(upstream.wait_client_left("hang", 2000));
  ASSERT_TRUE(collector.wait(5s)) << "the cancelled call never reported its end";
  const Outcome out = collector.outcome();
  ASSERT_TRUE(out.last.error);
  EXPECT_EQ(out.last.error->status, 499);
  EXPECT_EQ(out.last.deployment, "slow");
}

TEST(CallCost, PricesCachedAndCacheWriteTokensApart) {
  const Prices p{.input = 2, .cached_input = 0.5, .cache_write = 2.5, .output = 8};
  wire::Usage u{.prompt_tokens = 1000, .completion_tokens = 100, .cached_tokens = 600, .cache_write_tokens = 300, .cost_usd = {}};
  EXPECT_NEAR(call_cost_usd(p, u), (100 * 2 + 600 * 0.5 + 300 * 2.5 + 100 * 8) / 1e6, 1e-15);
  // No cached price: cached tokens cost the input price.
  EXPECT_NEAR(call_cost_usd({.input = 2, .cached_input = 0, .cache_write = 0, .output = 0}, u), 1000 * 2 / 1e6, 1e-15);
  // Inconsistent usage from an upstream cannot make a negative cost.
  u.cached_tokens = 5000;
  EXPECT_GE(call_cost_usd(p, u), 0);
}

// Costs carry no binary noise into JSON and the ledger: (1 * 0.15 + 2 * 0.6) / 1e6 is
// 1.3499999999999998e-06 in doubles; the cost is that rounded to 1e-10 USD, which prints as 1.35e-06.
TEST(CallCost, RoundedToATenthOfANanodollar) {
  const wire::Usage u{.prompt_tokens = 1, .completion_tokens = 2, .cached_tokens = 0, .cache_write_tokens = 0, .cost_usd = {}};
  const double cost = call_cost_usd({.input = 0.15, .cached_input = 0, .cache_write = 0, .output = 0.6}, u);
  EXPECT_EQ(nlohmann::json(cost).dump(), "1.35e-06");
  EXPECT_EQ(metering::round_usd(0.047099999999999996), 0.0471);
  EXPECT_EQ(nlohmann::json(metering::round_usd(0.00030020000000000003)).dump(), "0.0003002");
}

TEST(CallCost, WritesRetainedAnHourArePricedAtTheirOwnPrice) {
  const Prices p{.input = 1, .cached_input = 0.1, .cache_write = 1.25, .cache_write_1h = 2, .output = 5};
  const wire::Usage u{.prompt_tokens = 1000, .completion_tokens = 10, .cached_tokens = 200, .cache_write_tokens = 500,
                     .cache_write_1h_tokens = 300, .retention_denied_tokens = 0, .cost_usd = {}};
  EXPECT_NEAR(call_cost_usd(p, u), (300 * 1 + 200 * 0.1 + 200 * 1.25 + 300 * 2 + 10 * 5) / 1e6, 1e-15);
  // No 1-hour price: long writes cost the short-write price.
  EXPECT_NEAR(call_cost_usd({.input = 1, .cached_input = 0.1, .cache_write = 1.25, .cache_write_1h = 0, .output = 5}, u),
              (300 * 1 + 200 * 0.1 + 500 * 1.25 + 10 * 5) / 1e6, 1e-15);
}

}  // namespace
}  // namespace tern::router
