// tern.yaml: a full config parses into what it says, and every mistake is refused with the file, the
// line and column, and the key path.

#include <gtest/gtest.h>

#include <cstdlib>

#include "router/config.h"
#include "util/units.h"

namespace tern::router {
namespace {

const char* kFull = R"(server:
  host: 0.0.0.0
  port: 9000
memory_budget: 2G
models:
  - name: smol
    model: smollm2-135m
    threads: 2
    kv_cache_memory: 256M
    itl_target: 80ms
    prefill_order: shortest
    lora_dtype: q8
    preload: false
    idle_unload: 5m
    aliases: [small]
deployments:
  - name: gpt
    kind: openai
    base_url: http://127.0.0.1:1/v1
    api_key_env: TERN_TEST_KEY
    model: gpt-4o-mini
    prices: {input: 0.15, cached_input: 0.075, output: 0.6}
    max_concurrency: 32
    timeout: 120s
    first_byte_timeout: 10s
    retries: 2
    breaker: {failures: 3, window: 1m, open_for: 20s}
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:2/v1
    model: claude-haiku
routes:
  - name: chat
    deployments: [smol, gpt, claude]
    policy: prefix-affinity
    aliases: [default]
)";

TEST(GatewayConfig, AFullFileParses) {
  setenv("TERN_TEST_KEY", "sk-123", 1);
  auto c = parse_gateway_config(kFull, "tern.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "0.0.0.0");
  EXPECT_EQ(c->port, 9000);
  EXPECT_EQ(c->memory_budget_bytes, int64_t{2} << 30);
  ASSERT_EQ(c->local.size(), 1u);
  const auto& m = c->local[0];
  EXPECT_EQ(m.model.name, "smol");
  EXPECT_EQ(m.model.threads, 2);
  EXPECT_EQ(m.model.kv_cache_memory, int64_t{256} << 20);
  EXPECT_DOUBLE_EQ(m.model.scheduler.itl_target_s, 0.08);
  EXPECT_EQ(m.model.scheduler.prefill_order, engine::PrefillOrder::kShortestFirst);
  EXPECT_EQ(m.model.lora_dtype, backend::LoraWeightType::Q8);
  EXPECT_FALSE(m.model.preload);
  EXPECT_DOUBLE_EQ(m.model.idle_unload_s, 300);
  EXPECT_EQ(m.aliases, std::vector<std::string>{"small"});
  ASSERT_EQ(c->remote.size(), 2u);
  const auto& gpt = c->remote[0];
  EXPECT_EQ(gpt.remote.api_key, "sk-123");
  EXPECT_EQ(gpt.remote.upstream_model, "gpt-4o-mini");
  EXPECT_EQ(gpt.remote.timeout, std::chrono::milliseconds(120'000));
  EXPECT_EQ(gpt.remote.first_byte_timeout, std::chrono::milliseconds(10'000));
  EXPECT_DOUBLE_EQ(gpt.deployment.prices.cached_input, 0.075);
  EXPECT_EQ(gpt.deployment.max_concurrency, 32);
  EXPECT_EQ(gpt.deployment.retries, 2);
  EXPECT_EQ(gpt.deployment.breaker.failures_to_open, 3);
  EXPECT_EQ(gpt.deployment.breaker.window, std::chrono::milliseconds(60'000));
  EXPECT_EQ(c->remote[1].remote.kind, RemoteKind::kAnthropic);
  ASSERT_EQ(c->routes.size(), 1u);
  EXPECT_EQ(c->routes[0].policy, Policy::kPrefixAffinity);
  EXPECT_EQ(c->routes[0].deployments.size(), 3u);
}

/// The error for `text`, which must be refused.
std::string refused(const std::string& text) {
  auto c = parse_gateway_config(text, "t.yaml");
  EXPECT_FALSE(c) << "accepted:\n" << text;
  return c ? std::string() : c.error().message;
}

TEST(GatewayConfig, MistakesNameTheFileLineAndKey) {
  EXPECT_EQ(refused("models:\n  - model: x\n    threds: 2\n"),
            "t.yaml:3:5: models[0].threds: unknown key (known: aliases, breaker, chat_template, context, idle_unload, itl_target, "
            "kv_cache_memory, kv_disk_bytes, kv_disk_cache, kv_pin_fraction, kv_pin_quota, labels, lora_dtype, loras, max_batch_tokens, "
            "max_concurrency, max_lora_rank, max_loras, max_prefill_wait, max_running, max_waiting, model, name, prefill_order, "
            "prefix_caching, preload, prices, retries, speculate, threads)");
  EXPECT_EQ(refused("models:\n  - model: x\n    prefill_order: sjf\n"),
            "t.yaml:3:20: models[0].prefill_order: must be fcfs or shortest (got \"sjf\")");
  EXPECT_EQ(refused("models:\n  - model: x\n    lora_dtype: bf16\n"),
            "t.yaml:3:17: models[0].lora_dtype: must be q8 or f16 (got \"bf16\")");
  // LoRA adapters: their names share the one namespace, and must be usable in metric labels.
  EXPECT_EQ(refused("models:\n  - model: x\n    name: x\n    loras:\n      - {name: x, path: a.gguf}\n"),
            "t.yaml:5:9: models[0].loras[0].name: the name \"x\" is used twice (models, deployments and routes share one namespace)");
  EXPECT_NE(refused("models:\n  - model: x\n    loras:\n      - {name: 'a b', path: a.gguf}\n").find("may use only letters"),
            std::string::npos);
  EXPECT_NE(refused("models:\n  - model: x\n    loras:\n      - {name: a}\n").find("loras[0].path"), std::string::npos);
  auto ok = parse_gateway_config("models:\n  - model: x\n    max_loras: 3\n    loras:\n      - {name: a, path: a.gguf, scale: 0.5}\n", "t.yaml");
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_EQ(ok->local[0].model.loras.size(), 1u);
  EXPECT_EQ(ok->local[0].model.loras[0].path, "a.gguf");
  EXPECT_FLOAT_EQ(ok->local[0].model.loras[0].scale, 0.5f);
  EXPECT_EQ(ok->local[0].model.max_loras, 3);
  // Prompt-cache retention and the disk tier.
  auto cache = parse_gateway_config("models:\n  - model: x\n    kv_pin_fraction: 0.25\n    kv_pin_quota: 64M\n"
                                    "    kv_disk_cache: /var/cache/kv\n    kv_disk_bytes: 2G\n"
                                    "    prices: {input: 1, cache_write: 1.25, cache_write_1h: 2}\n", "t.yaml");
  ASSERT_TRUE(cache) << cache.error().message;
  EXPECT_DOUBLE_EQ(cache->local[0].model.kv_pin_fraction, 0.25);
  EXPECT_EQ(cache->local[0].model.kv_pin_quota, int64_t{64} << 20);
  EXPECT_EQ(cache->local[0].model.kv_disk_cache, "/var/cache/kv");
  EXPECT_EQ(cache->local[0].model.kv_disk_bytes, int64_t{2} << 30);
  EXPECT_DOUBLE_EQ(cache->local[0].deployment.prices.cache_write_1h, 2.0);
  EXPECT_EQ(refused("models:\n  - model: x\n    kv_pin_fraction: 1.5\n"), "t.yaml:3:22: models[0].kv_pin_fraction: must be from 0 to 1 (got 1.5)");
  EXPECT_NE(refused("models:\n  - model: x\n    kv_disk_bytes: lots\n").find("models[0].kv_disk_bytes"), std::string::npos);
  EXPECT_EQ(refused("deployments:\n  - name: a\n    kind: azure\n    base_url: http://x/v1\n    model: m\n"),
            "t.yaml:3:11: deployments[0].kind: must be one of openai, anthropic (got \"azure\")");
  EXPECT_EQ(refused("models:\n  - model: x\n    threads: many\n"), "t.yaml:3:14: models[0].threads: must be an integer");
  EXPECT_EQ(refused("models:\n  - model: x\n    threads: 5000\n"), "t.yaml:3:14: models[0].threads: must be from 0 to 1024 (got 5000)");
  EXPECT_EQ(refused("models:\n  - model: x\n    idle_unload: soon\n"),
            "t.yaml:3:18: models[0].idle_unload: " + parse_seconds("soon").error().message);
  EXPECT_EQ(refused("deployments:\n  - name: a\n    base_url: http://x/v1\n"), "t.yaml:2:5: deployments[0].model: required");
  EXPECT_EQ(refused("deployments:\n  - name: a\n    base_url: http://x/v1\n    model: m\n    prices: {input: -1}\n"),
            "t.yaml:5:21: deployments[0].prices.input: must be from 0 to 1000000 (got -1)");
  unsetenv("TERN_NOT_SET");
  EXPECT_EQ(refused("deployments:\n  - name: a\n    base_url: http://x/v1\n    model: m\n    api_key_env: TERN_NOT_SET\n"),
            "t.yaml:5:18: deployments[0].api_key_env: the environment variable TERN_NOT_SET is not set");
  EXPECT_EQ(refused("models:\n  - model: x\n  - model: x\n"),
            "t.yaml:3:5: models[1].name: the name \"x\" is used twice (models, deployments and routes share one namespace)");
  EXPECT_EQ(refused("models:\n  - model: x\nroutes:\n  - name: r\n    deployments: [x, y]\n"),
            "t.yaml:5:18: routes[0].deployments: \"y\" is not a model or deployment defined in this file");
  EXPECT_EQ(refused("models:\n  - model: x\nroutes:\n  - name: r\n    deployments: [x]\n    policy: roundrobin\n"),
            "t.yaml:6:13: routes[0].policy: must be one of price, latency, least-outstanding, prefix-affinity, random, kv-events (got \"roundrobin\")");
  EXPECT_EQ(refused("modles: []\n").substr(0, 28), "t.yaml:1:1: modles: unknown ");
  EXPECT_EQ(refused("models: {a: 1}\n"), "t.yaml:1:9: models: must be a list");
  EXPECT_EQ(refused(""), "t.yaml: the file is empty");
  EXPECT_EQ(refused("server: {port: 1}\n"), "t.yaml: nothing to serve: add a local model under `models:` or a remote one under `deployments:`");
  EXPECT_EQ(refused("models: [\n").substr(0, 25), "t.yaml:2:1: not valid YAM");
}

// Speculative decoding per model: a method name, or a map of its settings; mistakes name the key.
TEST(GatewayConfig, LabelsAndPlacementPolicies) {
  auto c = parse_gateway_config(R"(models:
  - model: x
    labels: {region: eu-west, compliance: gdpr}
deployments:
  - name: gpt
    kind: openai
    base_url: http://127.0.0.1:1/v1
    model: g
    labels: {region: us-east}
policies:
  orgs:
    acme: {regions: [eu-west, eu-central], never_remote: true}
  keys:
    k0123456789ab: {labels: {compliance: gdpr}}
tracing: {keep: 100, otlp_endpoint: http://collector:4318, service_name: tern-eu}
console: false
metrics_compat: vllm
)", "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->local[0].deployment.labels.at("compliance"), "gdpr");
  EXPECT_EQ(c->remote[0].deployment.labels.at("region"), "us-east");
  const wire::PlacementPolicy& acme = c->org_policies.at("acme");
  EXPECT_EQ(acme.owner, "org acme");
  EXPECT_EQ(acme.regions, (std::vector<std::string>{"eu-west", "eu-central"}));
  EXPECT_TRUE(acme.never_remote);
  EXPECT_EQ(c->key_policies.at("k0123456789ab").labels[0], (std::pair<std::string, std::string>{"compliance", "gdpr"}));
  EXPECT_EQ(c->traces_keep, 100);
  EXPECT_EQ(c->otlp_endpoint, "http://collector:4318");
  EXPECT_EQ(c->otlp_service_name, "tern-eu");
  EXPECT_EQ(c->console, false);
  EXPECT_EQ(c->metrics_compat, "vllm");

  EXPECT_NE(refused("policies:\n  orgs:\n    acme: {region: [eu]}\n").find("policies.orgs.acme.region: unknown key"), std::string::npos);
  EXPECT_NE(refused("models:\n  - model: x\n    labels: [eu]\n").find("models[0].labels: must be a mapping"), std::string::npos);
  EXPECT_NE(refused("metrics_compat: prometheus\n").find("metrics_compat: expected \"vllm\""), std::string::npos);
  EXPECT_NE(refused("tracing: {keep: -1}\n").find("tracing.keep"), std::string::npos);
}

TEST(GatewayConfig, ReplicaRoutingOnKvEvents) {
  const std::string replicas = R"(deployments:
  - {name: r1, kind: openai, base_url: "http://10.0.0.1:8000/v1", model: smol}
  - {name: r2, kind: openai, base_url: "http://10.0.0.2:8000/v1", model: smol, kv_events_pod: pod-b}
)";
  auto c = parse_gateway_config("kv_events: {listen: \"tcp://0.0.0.0:5557\", hash_seed: s}\n" + replicas +
                                "routes:\n  - {name: m, deployments: [r1, r2], policy: kv-events, tokenizer: smollm2-135m}\n"
                                "  - {name: n, deployments: [r1, r2], policy: random}\n", "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->kv_events_listen, "tcp://0.0.0.0:5557");
  EXPECT_EQ(c->kv_events_hash_seed, "s");
  EXPECT_EQ(c->remote[0].deployment.kv_source, "r1@smol") << "the pod defaults to the deployment's name";
  EXPECT_EQ(c->remote[1].deployment.kv_source, "pod-b@smol");
  EXPECT_EQ(c->routes[0].policy, Policy::kKvEvents);
  EXPECT_EQ(c->routes[0].tokenizer, "smollm2-135m");
  EXPECT_EQ(c->routes[0].decode_token_cost, kDefaultDecodeTokenCost);
  EXPECT_EQ(c->routes[1].policy, Policy::kRandom);
  auto gpu = parse_gateway_config("kv_events: {listen: \"tcp://0.0.0.0:5557\"}\n" + replicas +
                                  "routes:\n  - {name: m, deployments: [r1, r2], policy: kv-events, tokenizer: x, decode_token_cost: 40}\n", "t.yaml");
  ASSERT_TRUE(gpu) << gpu.error().message;
  EXPECT_EQ(gpu->routes[0].decode_token_cost, 40);
  EXPECT_NE(refused("kv_events: {listen: \"tcp://0.0.0.0:5557\"}\n" + replicas +
                    "routes:\n  - {name: m, deployments: [r1, r2], policy: kv-events, tokenizer: x, decode_token_cost: -1}\n")
                .find("routes[0].decode_token_cost"), std::string::npos);
  EXPECT_NE(refused(replicas + "routes:\n  - {name: m, deployments: [r1, r2], policy: random, decode_token_cost: 4}\n")
                .find("routes[0].decode_token_cost: only used by policy kv-events"), std::string::npos);

  EXPECT_NE(refused("kv_events: {listen: \"tcp://0.0.0.0:5557\"}\n" + replicas + "routes:\n  - {name: m, deployments: [r1, r2], policy: kv-events}\n")
                .find("routes[0].tokenizer: required with policy kv-events"), std::string::npos);
  EXPECT_NE(refused(replicas + "routes:\n  - {name: m, deployments: [r1, r2], policy: kv-events, tokenizer: x}\n")
                .find("routes[0].policy: kv-events needs `kv_events: {listen"), std::string::npos);
  EXPECT_NE(refused(replicas + "routes:\n  - {name: m, deployments: [r1, r2], tokenizer: x}\n").find("routes[0].tokenizer: only used by policy kv-events"),
            std::string::npos);
  EXPECT_NE(refused("kv_events: {hash_seed: x}\n" + replicas).find("kv_events: needs endpoint"), std::string::npos);
}

TEST(GatewayConfig, SpeculateTakesAMethodOrItsSettings) {
  auto plain = parse_gateway_config("models:\n  - model: x\n    speculate: ngram\n", "t.yaml");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(plain->local[0].model.speculation.method, engine::SpeculationMethod::kNgram);
  EXPECT_TRUE(plain->local[0].model.speculation.is_default_on);
  auto full = parse_gateway_config(
      "models:\n  - model: x\n    speculate: {method: ngram, max_draft: 5, min_draft: 1, ngram_min: 3, ngram_max: 6, opt_in: true}\n", "t.yaml");
  ASSERT_TRUE(full) << full.error().message;
  const engine::SpeculationConfig& s = full->local[0].model.speculation;
  EXPECT_EQ(s.max_draft, 5);
  EXPECT_EQ(s.min_draft, 1);
  EXPECT_EQ(s.ngram_min, 3);
  EXPECT_EQ(s.ngram_max, 6);
  EXPECT_FALSE(s.is_default_on);
  auto none = parse_gateway_config("models:\n  - model: x\n", "t.yaml");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->local[0].model.speculation.method, engine::SpeculationMethod::kOff);
  EXPECT_EQ(refused("models:\n  - model: x\n    speculate: eagle\n"),
            "t.yaml:3:16: models[0].speculate: unknown speculation method 'eagle': use off, ngram or draft");
  EXPECT_NE(refused("models:\n  - model: x\n    speculate: {method: ngram, ngram_min: 5, ngram_max: 2}\n").find("longest n-gram"),
            std::string::npos);
  EXPECT_NE(refused("models:\n  - model: x\n    speculate: {draft: 4}\n").find("speculate.draft: unknown key"), std::string::npos);
  // A draft model: its file alone means the draft method; the method without a file is refused.
  auto draft = parse_gateway_config("models:\n  - model: x\n    speculate: {draft_model: small.gguf, max_draft: 4}\n", "t.yaml");
  ASSERT_TRUE(draft) << draft.error().message;
  EXPECT_EQ(draft->local[0].model.speculation.method, engine::SpeculationMethod::kDraft);
  EXPECT_EQ(draft->local[0].model.speculation.draft_model, "small.gguf");
  EXPECT_NE(refused("models:\n  - model: x\n    speculate: draft\n").find("needs the draft model's file"), std::string::npos);
  EXPECT_NE(refused("models:\n  - model: x\n    speculate: {method: ngram, draft_model: small.gguf}\n").find("use draft"),
            std::string::npos);
}

TEST(GatewayConfig, HostileInputIsRefusedNotCrashed) {
  // Anchors, deep nesting, binary and odd scalars: each is an error or a valid config, never a crash.
  for (const char* text : {"models: &a [*a]\n", "models:\n  - model: [[[[[[[[[[]]]]]]]]]]\n", "\x01\x02\x03", "models: [~]\n",
                           "models:\n  - model: x\n    prices: 7\n", "routes: [{name: r, deployments: 3}]\nmodels: [{model: x}]\n",
                           "deployments: [{name: a, base_url: http://x/v1, model: m, timeout: [1]}]\n"}) {
    auto c = parse_gateway_config(text, "t.yaml");
    if (!c) {
      EXPECT_FALSE(c.error().message.empty());
    }
  }
}

}  // namespace
}  // namespace tern::router
