// Speculative decoding with a draft model (engine/spec/draft_model.h) through the real engine on the
// real models, against the same engine without it.
//
// With the target's own file as the draft, every guess must be accepted: the draft computes the same
// batch-invariant rows as the target, so a single refusal means the draft's K/V went out of step with
// the request (a rollback, a catch-up or a prefix-cache hit done wrong). With a different draft (the
// Q8_0 re-quantization made by tools/make_draft_target.py) and with sampled requests, refusals happen
// and the output must still be exactly that without speculation. Guesses are made and verified
// unconditionally (min_draft), so the tests do not depend on the step-time model's judgement.

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine_stack.h"
#include "engine/spec/draft_model.h"
#include "engine_harness.h"
#include "model/model.h"
#include "test_support.h"

namespace tern::model {
namespace {

constexpr int64_t kBlocks = 256;

engine::SpeculationConfig forced_draft(int32_t guesses) {
  return {.method = engine::SpeculationMethod::kDraft, .max_draft = guesses, .min_draft = guesses, .draft_model = "in-test"};
}

std::unique_ptr<Model> load(const std::string& path, backend::Backend& backend) {
  EXPECT_TRUE(std::filesystem::exists(path)) << path << " is missing: run scripts/test.sh";
  auto loaded = Model::load(path, backend);
  EXPECT_TRUE(loaded) << (loaded ? "" : loaded.error().message);
  return loaded ? std::move(*loaded) : nullptr;
}

std::shared_ptr<engine::DraftModel> make_draft(Model& draft, const Model& target, int64_t min_draft, bool prefix_caching = true) {
  return std::make_shared<engine::DraftModel>(draft, kBlocks, 16, target.config().vocab_size, prefix_caching, min_draft);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<int32_t> chat_prompt(const Model& model, const std::string& user) {
  return model.tokenizer().encode("<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n", {.add_special = true, .parse_special = true});
}

// The forward-pass goldens' prompts, 48 greedy tokens each: the same tokens and bit-identical logits,
// and with the target's own file as the draft, every guess accepted.
TEST(DraftModel, SameFileDraftIsAlwaysRightAndOutputIsThatWithout) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  const std::string path = testing::model_or_fixture_path("smollm2-135m");
  auto target = load(path, *cpu);
  auto draft = load(path, *cpu);
  ASSERT_TRUE(target && draft);
  const auto goldens = nlohmann::json::parse(testing::read_text(testing::data_path("logits/smollm2-135m.json")));
  testing::EngineHarness plain(*target, kBlocks, /*keep_logits=*/true);
  auto draft_model = make_draft(*draft, *target, 5);
  testing::EngineHarness speculating(*target, kBlocks, /*keep_logits=*/true, /*prefix_caching=*/false, 512, forced_draft(5), draft_model);
  int64_t drafted = 0, accepted = 0;
  for (const auto& c : goldens.at("cases")) {
    const auto tokens = c.at("tokens").get<std::vector<int32_t>>();
    const testing::EngineOutput want = plain.run(tokens, 48);
    const testing::EngineOutput got = speculating.run(tokens, 48);
    ASSERT_TRUE(got.error.empty()) << got.error;
    EXPECT_EQ(got.tokens, want.tokens);
    ASSERT_EQ(got.logit_rows.size(), want.logit_rows.size());
    for (size_t i = 0; i < want.logit_rows.size(); ++i) EXPECT_TRUE(same_bits(got.logit_rows[i], want.logit_rows[i])) << "token " << i;
    drafted += got.num_draft_tokens;
    accepted += got.num_accepted_tokens;
  }
  EXPECT_GT(drafted, 0);
  EXPECT_EQ(accepted, drafted) << "a same-file draft disagreed with its target: its K/V is out of step";
  EXPECT_GT(draft_model->stats().rounds, 0);
}

// 12 requests at once with prompts longer than the draft's per-step catch-up (kMaxCatchUpTokens), so
// rounds mix catching-up chunks, first guesses and later guesses; each equals the request alone
// without speculation, and a same-file draft is still never wrong. The same prompts again hit the
// draft's prefix cache: it computes fewer tokens the second time.
TEST(DraftModel, BatchedRoundsCatchUpLongPromptsAndReuseTheDraftPrefixCache) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  const std::string path = testing::model_or_fixture_path("smollm2-135m");
  auto target = load(path, *cpu);
  auto draft = load(path, *cpu);
  ASSERT_TRUE(target && draft);
  const std::string file = testing::read_text(std::string(TERN_TEST_DATA_DIR) + "/../../src/engine/stop_matcher.cpp");
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) {
    prompts.push_back(chat_prompt(*target, (i % 2 == 0 ? file.substr(static_cast<size_t>(i) * 40) : "Count to " + std::to_string(i * 7)) +
                                               "\nSay what this is."));
  }
  ASSERT_GT(prompts[0].size(), static_cast<size_t>(engine::DraftModel::kMaxCatchUpTokens));
  testing::EngineHarness plain(*target, kBlocks, /*keep_logits=*/false);
  std::vector<std::vector<int32_t>> want;
  for (const auto& prompt : prompts) want.push_back(plain.run(prompt, 24).tokens);
  auto draft_model = make_draft(*draft, *target, 4);
  testing::EngineHarness speculating(*target, kBlocks, /*keep_logits=*/false, /*prefix_caching=*/true, 512, forced_draft(4), draft_model);
  int64_t catch_up_first = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t catch_up_before = draft_model->stats().catch_up_tokens;
    std::vector<uint64_t> ids;
    for (const auto& prompt : prompts) ids.push_back(speculating.submit(prompt, 24));
    int64_t drafted = 0, accepted = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      const testing::EngineOutput got = speculating.wait(ids[i]);
      ASSERT_TRUE(got.error.empty()) << got.error;
      EXPECT_EQ(got.tokens, want[i]) << "pass " << pass << " request " << i;
      drafted += got.num_draft_tokens;
      accepted += got.num_accepted_tokens;
    }
    EXPECT_GT(drafted, 0);
    EXPECT_EQ(accepted, drafted) << "pass " << pass;
    const int64_t catch_up = draft_model->stats().catch_up_tokens - catch_up_before;
    if (pass == 0) {
      catch_up_first = catch_up;
    } else {
      EXPECT_LT(catch_up, catch_up_first / 2) << "the draft's prefix cache was not used";
    }
  }
}

// Sampled requests with a greedy draft: many refusals, yet the same tokens as without for the same seed.
TEST(DraftModel, SampledTokensAreThoseWithoutForTheSameSeed) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  const std::string path = testing::model_or_fixture_path("smollm2-135m");
  auto target = load(path, *cpu);
  auto draft = load(path, *cpu);
  ASSERT_TRUE(target && draft);
  const auto prompt = chat_prompt(*target, "Tell me about the sea.");
  const auto sample_all = [&](bool speculate) {
    auto draft_model = speculate ? make_draft(*draft, *target, 3) : nullptr;
    testing::EngineHarness engine(*target, kBlocks, /*keep_logits=*/false, /*prefix_caching=*/true, 512,
                                  speculate ? forced_draft(3) : engine::SpeculationConfig{}, draft_model);
    std::vector<uint64_t> ids;
    for (int i = 0; i < 40; ++i) {
      engine::GenerationRequest request;
      request.prompt = prompt;
      request.sampling = {.temperature = 1.0f, .top_k = 20, .seed = static_cast<uint64_t>(77 + i)};
      request.max_tokens = 16;
      request.ignore_eos = true;
      request.top_logprobs = 0;
      ids.push_back(engine.submit(std::move(request)));
    }
    std::vector<std::vector<int32_t>> out;
    int64_t drafted = 0, accepted = 0;
    for (uint64_t id : ids) {
      testing::EngineOutput o = engine.wait(id);
      EXPECT_TRUE(o.error.empty()) << o.error;
      drafted += o.num_draft_tokens;
      accepted += o.num_accepted_tokens;
      out.push_back(std::move(o.tokens));
    }
    return std::tuple(out, drafted, accepted);
  };
  const auto [plain, plain_drafted, plain_accepted] = sample_all(false);
  const auto [speculating, drafted, accepted] = sample_all(true);
  EXPECT_EQ(plain_drafted, 0);
  EXPECT_GT(accepted, 0);
  EXPECT_GT(drafted, accepted) << "a sampled target should refuse some greedy guesses";
  EXPECT_EQ(plain, speculating) << "sampled requests differ with a draft model";
}

// A different draft: the shipped Q4_1 file guessing for its Q8_0 re-quantization (the pair
// bench/speculative_vs_llamacpp.py measures). Some guesses refused, the output exactly the target's.
TEST(DraftModel, QuantizedDraftForItsQ8Target) {
  const std::string target_path = testing::fixture_path("smollm2-135m-q8_0.gguf");
  if (!std::filesystem::exists(target_path)) GTEST_SKIP() << target_path << " is missing: scripts/test.sh makes it";
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(2);
  auto target = load(target_path, *cpu);
  auto draft = load(testing::model_or_fixture_path("smollm2-135m"), *cpu);
  ASSERT_TRUE(target && draft);
  ASSERT_TRUE(engine::check_draft_compatible(*target, *draft));
  testing::EngineHarness plain(*target, kBlocks, /*keep_logits=*/false);
  auto draft_model = make_draft(*draft, *target, 6);
  testing::EngineHarness speculating(*target, kBlocks, /*keep_logits=*/false, /*prefix_caching=*/true, 512, forced_draft(6), draft_model);
  int64_t drafted = 0, accepted = 0;
  for (const char* user : {"Write a short poem about the sea.", "Explain what a compiler does.", "List five fruits and their colours."}) {
    const auto prompt = chat_prompt(*target, user);
    const testing::EngineOutput want = plain.run(prompt, 96);
    const testing::EngineOutput got = speculating.run(prompt, 96);
    ASSERT_TRUE(got.error.empty()) << got.error;
    EXPECT_EQ(got.tokens, want.tokens) << user;
    drafted += got.num_draft_tokens;
    accepted += got.num_accepted_tokens;
  }
  std::printf("Q4_1 draft for Q8_0 target: %lld guesses verified, %lld accepted\n", static_cast<long long>(drafted),
              static_cast<long long>(accepted));
  EXPECT_GT(accepted, drafted / 2);
}

TEST(DraftModel, IncompatibleDraftsAreRefusedNamingTheDifference) {
  const std::unique_ptr<backend::Backend> cpu = backend::make_cpu_backend(1);
  auto smollm = load(testing::model_or_fixture_path("smollm2-135m"), *cpu);
  auto gemma = load(testing::model_or_fixture_path("gemma3-270m"), *cpu);
  auto small_vocab = load(testing::fixture_path("llama3-random.gguf"), *cpu);  // SmolLM2's first 512 tokens
  ASSERT_TRUE(smollm && gemma && small_vocab);
  EXPECT_TRUE(engine::check_draft_compatible(*smollm, *smollm));
  const auto other = engine::check_draft_compatible(*smollm, *gemma);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("tokenizer"), std::string::npos) << other.error().message;
  const auto smaller = engine::check_draft_compatible(*smollm, *small_vocab);
  ASSERT_FALSE(smaller);
  EXPECT_NE(smaller.error().message.find("vocabularies differ"), std::string::npos) << smaller.error().message;

  // Through the engine-stack builder, as tern serve and tern run meet it.
  engine::EngineStackOptions options;
  options.path = testing::model_or_fixture_path("smollm2-135m");
  options.threads = 1;
  options.kv.context = 512;
  options.engine.speculation = {.method = engine::SpeculationMethod::kDraft, .draft_model = testing::model_or_fixture_path("gemma3-270m")};
  const auto refused = engine::build_engine_stack(options);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("cannot guess"), std::string::npos) << refused.error().message;
  options.engine.speculation.draft_model = options.path;
  auto built = engine::build_engine_stack(options);
  ASSERT_TRUE(built) << built.error().message;
  EXPECT_TRUE((*built)->draft_model);
  EXPECT_TRUE((*built)->engine->config().draft_model);
}

}  // namespace
}  // namespace tern::model
