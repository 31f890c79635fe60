// Speculative decoding (engine/spec/proposer.h) through the real engine on the real models, against the
// same engine without it. Verification is exact: the rows of a chunk of guesses are computed with the
// arithmetic of one-token decodes (the kernels are batch invariant, engine_batch_test.cpp), so a greedy
// request must produce the same tokens with bit-identical logits, and everything downstream of the
// tokens (text, stop strings, logprobs, grammars, LoRA, the prefix cache) must agree exactly. Guesses
// are verified unconditionally here (min_draft), so the tests do not depend on the step-time model's
// judgement of this machine; each checks that guesses were both accepted and refused.

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/grammar/grammar.h"
#include "engine_harness.h"
#include "model/lora.h"
#include "model/model.h"
#include "test_support.h"
#include "util/tern_home.h"

namespace tern::model {
namespace {

/// Prompt lookup with the shortest n-grams (a guess at nearly every step) and every guess verified.
engine::SpeculationConfig eager_ngram() {
  return {.method = engine::SpeculationMethod::kNgram, .is_default_on = true, .ngram_min = 1, .ngram_max = 4, .max_draft = 6,
          .min_draft = 6};
}

std::unique_ptr<Model> load_model(const std::string& name, backend::Backend& backend) {
  const std::string path = testing::model_or_fixture_path(name);
  EXPECT_TRUE(std::filesystem::exists(path)) << path << " is missing: run scripts/test.sh";
  auto loaded = Model::load(path, backend);
  EXPECT_TRUE(loaded) << (loaded ? "" : loaded.error().message);
  return loaded ? std::move(*loaded) : nullptr;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// A source file to rewrite: input-grounded text, where prompt lookup's guesses are often right.
std::string code_edit_prompt(const Model& model) {
  const std::string file = testing::read_text(std::string(TERN_TEST_DATA_DIR) + "/../../src/engine/stop_matcher.cpp");
  std::string prompt = "<|im_start|>user\nHere is a C++ source file:\n\n" + file +
                       "\nRewrite the whole file with the class StopMatcher renamed to StopStringMatcher. Output only the code.<|im_end|>\n"
                       "<|im_start|>assistant\n";
  (void)model;
  return prompt;
}

class SpeculativeGolden : public ::testing::TestWithParam<const char*> {};

// The forward-pass goldens' prompts (tests/data/logits), 64 greedy tokens each, with and without guesses.
TEST_P(SpeculativeGolden, GreedyTokensAndLogitsAreThoseWithoutSpeculation) {
  const std::string name = GetParam();
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model(name, *cpu);
  ASSERT_TRUE(model);
  const auto goldens = nlohmann::json::parse(testing::read_text(testing::data_path("logits/" + name + ".json")));
  testing::EngineHarness plain(*model, 64, /*keep_logits=*/true);
  testing::EngineHarness speculating(*model, 64, /*keep_logits=*/true, /*prefix_caching=*/false, 512, eager_ngram());
  int64_t drafted = 0, accepted = 0;
  const auto& cases = goldens.at("cases");
  size_t num_cases = cases.size();
  if (const char* limit = std::getenv("TERN_GOLDEN_CASES"); limit && *limit) num_cases = std::min(num_cases, static_cast<size_t>(std::max(1, std::atoi(limit))));
  for (size_t c = 0; c < num_cases; ++c) {
    const auto tokens = cases[c].at("tokens").get<std::vector<int32_t>>();
    const testing::EngineOutput want = plain.run(tokens, 64);
    const testing::EngineOutput got = speculating.run(tokens, 64);
    ASSERT_TRUE(got.error.empty()) << got.error;
    EXPECT_EQ(got.tokens, want.tokens) << name << " prompt " << c;
    ASSERT_EQ(got.logit_rows.size(), want.logit_rows.size()) << name << " prompt " << c;
    for (size_t i = 0; i < want.logit_rows.size(); ++i) {
      EXPECT_TRUE(same_bits(got.logit_rows[i], want.logit_rows[i])) << name << " prompt " << c << ": logits of token " << i << " differ";
    }
    drafted += got.num_draft_tokens;
    accepted += got.num_accepted_tokens;
  }
  std::printf("%s: %lld guesses verified, %lld accepted\n", name.c_str(), static_cast<long long>(drafted), static_cast<long long>(accepted));
  EXPECT_GT(accepted, 0);
  EXPECT_GT(drafted, accepted);  // refusals were exercised too
}

INSTANTIATE_TEST_SUITE_P(Models, SpeculativeGolden, ::testing::Values("smollm2-135m", "gemma3-270m"),
                         [](const auto& info) { return testing::param_name(info.param); });

// engine_batch_test.cpp's scenario with guesses: 16 requests, prompts chunked beside other requests'
// decodes (and now their guesses), each equal to the request alone without speculation.
TEST(Speculative, GreedyOutputInsideAMixedBatchEqualsAloneWithout) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model("smollm2-135m", *cpu);
  ASSERT_TRUE(model);
  const auto encode = [&](const std::string& text) { return model->tokenizer().encode(text, {.add_special = true}); };
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back(encode("Request " + std::to_string(i) + ": list the numbers from " + std::to_string(i) + " to " +
                             std::to_string(i + 20) + ", one per line, as 'number N'." + (i % 3 == 0 ? " Then say why counting matters." : "")));
  }
  const int64_t kTokens = 32;
  testing::EngineHarness plain(*model, 512, /*keep_logits=*/false);
  std::vector<std::vector<int32_t>> alone;
  for (const auto& prompt : prompts) alone.push_back(plain.run(prompt, kTokens).tokens);
  testing::EngineHarness engine(*model, 512, /*keep_logits=*/false, /*prefix_caching=*/false, /*max_batch_tokens=*/64, eager_ngram());
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < 8; ++i) ids.push_back(engine.submit(prompts[i], kTokens));
  engine.wait_for_tokens(ids.back(), 2);
  for (size_t i = 8; i < 16; ++i) ids.push_back(engine.submit(prompts[i], kTokens));
  int64_t accepted = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const testing::EngineOutput together = engine.wait(ids[i]);
    ASSERT_TRUE(together.error.empty()) << together.error;
    EXPECT_EQ(together.tokens, alone[i]) << "request " << i << " differs inside the batch";
    accepted += together.num_accepted_tokens;
  }
  EXPECT_GT(accepted, 0);
}

/// A request as a client would send it: text, stop strings, logprobs, EOS honoured.
engine::GenerationRequest client_request(const Model& model, const std::string& prompt, std::vector<std::string> stop, int64_t max_tokens) {
  engine::GenerationRequest request;
  request.prompt = model.tokenizer().encode(prompt, {.add_special = false, .parse_special = true});
  request.sampling.temperature = 0;
  request.max_tokens = max_tokens;
  request.stop = std::move(stop);
  request.top_logprobs = 3;
  return request;
}

void expect_same_output(const testing::EngineOutput& got, const testing::EngineOutput& want, const std::string& what) {
  ASSERT_TRUE(got.error.empty()) << what << ": " << got.error;
  EXPECT_EQ(got.text, want.text) << what;
  EXPECT_EQ(got.tokens, want.tokens) << what;
  EXPECT_EQ(got.finish_reason, want.finish_reason) << what;
  EXPECT_EQ(got.stop_sequence, want.stop_sequence) << what;
  EXPECT_EQ(got.usage.completion_tokens, want.usage.completion_tokens) << what;
  ASSERT_EQ(got.logprobs.size(), want.logprobs.size()) << what;
  for (size_t i = 0; i < want.logprobs.size(); ++i) {
    EXPECT_EQ(got.logprobs[i].logprob, want.logprobs[i].logprob) << what << " token " << i;
    EXPECT_EQ(got.logprobs[i].top, want.logprobs[i].top) << what << " token " << i;
  }
}

// Stop strings (cut inside an accepted run of guesses), max_tokens (reached inside one), logprobs and
// the streamed text: the same as without speculation, on a code-rewriting prompt where most guesses hold.
TEST(Speculative, StopStringsMaxTokensLogprobsAndTextAreThoseWithout) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model("smollm2-135m", *cpu);
  ASSERT_TRUE(model);
  const std::string prompt = code_edit_prompt(*model);
  testing::EngineHarness plain(*model, 256, /*keep_logits=*/false);
  testing::EngineHarness speculating(*model, 256, /*keep_logits=*/false, /*prefix_caching=*/false, 512, eager_ngram());
  int64_t accepted = 0;
  const std::vector<std::pair<std::vector<std::string>, int64_t>> variants = {
      {{}, 120}, {{}, 37}, {{"return"}, 200}, {{"erase_if", "stops_"}, 200}, {{"\n\n"}, 200}};
  for (const auto& [stop, max_tokens] : variants) {
    const std::string what = fmt::format("stop [{}] max_tokens {}", fmt::join(stop, ", "), max_tokens);
    const testing::EngineOutput want = plain.wait(plain.submit(client_request(*model, prompt, stop, max_tokens)));
    const testing::EngineOutput got = speculating.wait(speculating.submit(client_request(*model, prompt, stop, max_tokens)));
    expect_same_output(got, want, what);
    accepted += got.num_accepted_tokens;
  }
  EXPECT_GT(accepted, 20);
}

// A JSON-schema request: the grammar masks each guess's row in the state after the guesses before it.
TEST(Speculative, GrammarConstrainedOutputIsThatWithout) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model("smollm2-135m", *cpu);
  ASSERT_TRUE(model);
  engine::GrammarCompiler compiler(model->tokenizer(), model->end_of_generation_tokens());
  const std::string schema = R"({"type": "object", "properties": {"name": {"type": "string"}, "items": {"type": "array",
      "items": {"type": "string"}, "minItems": 3, "maxItems": 6}}, "required": ["name", "items"], "additionalProperties": false})";
  const std::string prompt = "<|im_start|>user\nGive a shopping list in JSON with a name and items: apples, apples, pears, "
                             "apples, pears, bread.<|im_end|>\n<|im_start|>assistant\n";
  testing::EngineHarness plain(*model, 128, /*keep_logits=*/false);
  testing::EngineHarness speculating(*model, 128, /*keep_logits=*/false, /*prefix_caching=*/false, 512, eager_ngram());
  auto request = [&] {
    auto r = client_request(*model, prompt, {}, 120);
    auto constraint = compiler.json_schema(schema);
    EXPECT_TRUE(constraint) << constraint.error().message;
    r.constraint = *constraint;
    return r;
  };
  const testing::EngineOutput want = plain.wait(plain.submit(request()));
  const testing::EngineOutput got = speculating.wait(speculating.submit(request()));
  expect_same_output(got, want, "json schema");
  EXPECT_FALSE(nlohmann::json::parse(got.text, nullptr, false).is_discarded()) << got.text;
  EXPECT_GT(got.num_draft_tokens, 0);
}

// A LoRA adapter applies to the guesses' rows as to every row of its request.
TEST(Speculative, LoraOutputIsThatWithout) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model("smollm2-135m", *cpu);
  ASSERT_TRUE(model);
  const std::string adapter_path = models::tern_home() + "/fixtures/lora/smollm2-r16.gguf";
  ASSERT_TRUE(std::filesystem::exists(adapter_path)) << adapter_path << " is missing: scripts/test.sh makes the LoRA fixtures";
  auto adapter = load_lora(adapter_path, model->config());
  ASSERT_TRUE(adapter) << adapter.error().message;
  std::shared_ptr<const LoraAdapter> shared = std::move(*adapter);
  const auto prompt = model->tokenizer().encode(code_edit_prompt(*model), {.add_special = false, .parse_special = true});
  testing::EngineHarness plain(*model, 256, /*keep_logits=*/true);
  testing::EngineHarness speculating(*model, 256, /*keep_logits=*/true, /*prefix_caching=*/false, 512, eager_ngram());
  const testing::EngineOutput want = plain.run(prompt, 80, shared);
  const testing::EngineOutput got = speculating.run(prompt, 80, shared);
  EXPECT_EQ(got.tokens, want.tokens);
  ASSERT_EQ(got.logit_rows.size(), want.logit_rows.size());
  for (size_t i = 0; i < want.logit_rows.size(); ++i) EXPECT_TRUE(same_bits(got.logit_rows[i], want.logit_rows[i])) << "token " << i;
  EXPECT_GT(got.num_accepted_tokens, 0);
}

// Only verified tokens enter the prefix cache: a request that continues a speculating request's output
// reads back blocks written while guesses were refused, and must see exactly what a fresh computation sees.
TEST(Speculative, PrefixCacheHoldsOnlyVerifiedTokens) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model("smollm2-135m", *cpu);
  ASSERT_TRUE(model);
  const auto prompt = model->tokenizer().encode(code_edit_prompt(*model), {.add_special = false, .parse_special = true});
  testing::EngineHarness speculating(*model, 256, /*keep_logits=*/true, /*prefix_caching=*/true, 512, eager_ngram());
  const testing::EngineOutput first = speculating.run(prompt, 150);
  ASSERT_GT(first.num_draft_tokens, first.num_accepted_tokens);  // refusals wrote K/V that had to be overwritten
  std::vector<int32_t> continued = prompt;
  continued.insert(continued.end(), first.tokens.begin(), first.tokens.end());
  const testing::EngineOutput cached = speculating.run(continued, 8);
  EXPECT_GT(cached.usage.cached_tokens, static_cast<int64_t>(prompt.size()) + 100) << "the decode's blocks were not reused";
  testing::EngineHarness fresh(*model, 256, /*keep_logits=*/true);
  const testing::EngineOutput want = fresh.run(continued, 8);
  EXPECT_EQ(cached.tokens, want.tokens);
  ASSERT_EQ(cached.logit_rows.size(), want.logit_rows.size());
  for (size_t i = 0; i < want.logit_rows.size(); ++i) EXPECT_TRUE(same_bits(cached.logit_rows[i], want.logit_rows[i])) << "token " << i;
}

// Sampled requests: verification is rejection sampling coupled to the sampler's own draw, which is
// keyed by (seed, position), so a sampled request gets the same tokens with speculation as without
// (sampler_test.cpp's SamplerVerify tests the distribution and the acceptance rate). 600 requests at
// temperature 1 with different seeds on a repetitive prompt, where guesses exist and are often right.
TEST(Speculative, SampledTokensAreThoseWithoutForTheSameSeed) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto model = load_model("smollm2-135m", *cpu);
  ASSERT_TRUE(model);
  const auto prompt = model->tokenizer().encode("one two three four five one two three four five one two three four five one two",
                                                {.add_special = true});
  constexpr int kRequests = 600;
  const auto sample_all = [&](engine::SpeculationConfig speculation) {
    testing::EngineHarness engine(*model, 1024, /*keep_logits=*/false, /*prefix_caching=*/true, 512, speculation);
    std::vector<uint64_t> ids;
    for (int i = 0; i < kRequests; ++i) {
      engine::GenerationRequest request;
      request.prompt = prompt;
      request.sampling = {.temperature = 1.0f, .top_k = 6, .seed = static_cast<uint64_t>(1000 + i)};
      request.max_tokens = 6;
      request.ignore_eos = true;
      request.top_logprobs = 0;
      ids.push_back(engine.submit(std::move(request)));
    }
    std::vector<std::vector<int32_t>> out;
    int64_t accepted = 0;
    for (uint64_t id : ids) {
      testing::EngineOutput o = engine.wait(id);
      EXPECT_TRUE(o.error.empty()) << o.error;
      accepted += o.num_accepted_tokens;
      out.push_back(std::move(o.tokens));
    }
    return std::pair(out, accepted);
  };
  const auto [plain, plain_accepted] = sample_all({});
  const auto [speculating, accepted] = sample_all(eager_ngram());
  EXPECT_EQ(plain_accepted, 0);
  EXPECT_GT(accepted, kRequests / 4) << "too few guesses accepted for the test to mean anything";
  int differing = 0;
  for (int i = 0; i < kRequests; ++i) differing += plain[static_cast<size_t>(i)] != speculating[static_cast<size_t>(i)];
  EXPECT_EQ(differing, 0) << "sampled requests differ with speculation";
  std::set<std::vector<int32_t>> distinct(plain.begin(), plain.end());
  EXPECT_GT(distinct.size(), 50u) << "the requests were meant to be sampled, not all alike";
}

}  // namespace
}  // namespace tern::model
