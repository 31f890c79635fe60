// LoRA adapters on small crafted models: the forward pass against an exact reference (the merged
// weights W + scale·B·A on a random model) and every refusal of the loader naming its problem. The
// real models' checks (llama.cpp goldens, PEFT = GGUF, mixed batches, the prefix cache) are in
// lora_golden_test.cpp.
//

#include <gtest/gtest.h>

#include "backend/cpu/cpu_lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "gguf/gguf_builder.h"
#include "model/lora.h"
#include "model/forward_once.h"
#include "model/model.h"
#include "model/tiny_model.h"
#include "tensor/half.h"

namespace tern::model {
namespace {

namespace fs = std::filesystem;

backend::Backend& cpu() { return testing::test_cpu_backend(); }

using testing::last_logits;
using testing::GgufBuilder;

// ---- an exact reference: the merged weights ------------------------------------------------------

struct RandomLora {
  std::map<std::string, std::pair<std::vector<float>, std::vector<float>>> pairs;  // tensor -> (A [r][in], B [out][r])
  int rank = 3;
  float alpha = 5;
};

/// F16-representable random values, so the adapter's F16 copy is exact and the merge can be too.
std::vector<float> random_f16(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = f16_to_float(float_to_f16(normal(rng)));
  return v;
}

std::string write_lora_gguf(const std::string& arch, const RandomLora& lora, const std::function<void(GgufBuilder&)>& extra = {}) {
  GgufBuilder b;
  b.kv_string("general.architecture", arch).kv_string("general.type", "adapter").kv_string("adapter.type", "lora")
      .kv_f32("adapter.lora.alpha", lora.alpha);
  for (const auto& [name, pair] : lora.pairs) {
    const uint64_t rank = lora.rank, in = pair.first.size() / rank, out = pair.second.size() / rank;
    b.tensor(name + ".lora_a", {in, rank}, 0, testing::f32_bytes(pair.first));
    b.tensor(name + ".lora_b", {rank, out}, 0, testing::f32_bytes(pair.second));
  }
  if (extra) extra(b);
  const std::string path = testing::temp_file("tern_lora", ".gguf");
  std::ofstream(path, std::ios::binary) << b.build();
  return path;
}

LoraTarget target_of(const std::string& tensor) {
  for (auto [part, target] : {std::pair{"attn_q.", LoraTarget::kQ}, {"attn_k.", LoraTarget::kK}, {"attn_v.", LoraTarget::kV},
                              {"attn_output.", LoraTarget::kO}, {"ffn_gate.", LoraTarget::kGate}, {"ffn_up.", LoraTarget::kUp},
                              {"ffn_down.", LoraTarget::kDown}}) {
    if (tensor.find(part) != std::string::npos) return target;
  }
  ADD_FAILURE() << "no LoRA target for " << tensor;
  return LoraTarget::kQ;
}

// The reference merges the weights the adapter keeps: the file's F16-exact values for F16; for Q8 the
// 8-bit values times their block scales (how far those are from the file's is the kernel test's
// Q8QuantizationStaysWithinHalfAStep). Either way what is left is float summation order.
void expect_merged_weights_match(backend::LoraWeightType weight_type) {
  std::mt19937 rng(7);
  std::map<std::string, std::vector<float>> weights;
  auto fill = [&](const std::string& name, uint64_t n) {
    auto& w = weights[name];
    w = random_f16(n, name.find("norm") != std::string::npos ? 0.0f : 0.2f, rng);
    if (name.find("norm") != std::string::npos) w.assign(n, 1.0f);
    return w;
  };
  const std::string base = testing::write_tiny_llama("llama", {}, fill);
  RandomLora lora;
  for (const auto& [name, shape] : testing::tiny_llama_tensors()) {
    if (!name.starts_with("blk.0.attn_") && !name.starts_with("blk.0.ffn_")) continue;
    if (name.find("norm") != std::string::npos) continue;
    lora.pairs[name] = {random_f16(lora.rank * shape[0], 0.3f, rng), random_f16(shape[1] * lora.rank, 0.3f, rng)};
  }
  const std::string adapter_path = write_lora_gguf("llama", lora);
  auto model = Model::load(base, cpu());
  ASSERT_TRUE(model);
  auto adapter = load_lora(adapter_path, (*model)->config(), {.weight_type = weight_type});
  ASSERT_TRUE(adapter) << adapter.error().message;
  EXPECT_EQ((*adapter)->max_rank, 3);
  EXPECT_FLOAT_EQ((*adapter)->scale, 5.0f / 3.0f);
  // W' = W + (alpha / rank) B A, materialised in double and rounded once.
  const std::string merged = testing::write_tiny_llama("llama", {}, [&](const std::string& name, uint64_t n) {
    std::vector<float> w = weights[name];
    if (!lora.pairs.contains(name)) return w;
    const backend::LoraMatrix& m = (*adapter)->matrix(0, target_of(name));
    EXPECT_EQ(m.type, weight_type);
    const kernels::LoraWeights kept = backend::cpu_lora_weights(m);
    const auto in = static_cast<size_t>(m.in), out = static_cast<size_t>(m.out);
    EXPECT_EQ(in * out, n);
    for (size_t o = 0; o < out; ++o) {
      for (size_t i = 0; i < in; ++i) {
        double sum = 0;
        for (int r = 0; r < lora.rank; ++r) sum += double(kept.b_t_at(r, static_cast<int64_t>(o))) * kept.a_at(r, static_cast<int64_t>(i));
        w[o * in + i] = static_cast<float>(w[o * in + i] + lora.alpha / lora.rank * sum);
      }
    }
    return w;
  });
  auto merged_model = Model::load(merged, cpu());
  ASSERT_TRUE(merged_model);
  const int32_t prompt[] = {0, 2, 5, 3, 7, 4, 6};
  const auto with_adapter = last_logits(**model, prompt, adapter->get());
  const auto reference = last_logits(**merged_model, prompt, nullptr);
  const auto base_logits = last_logits(**model, prompt, nullptr);
  double largest_change = 0;
  for (size_t i = 0; i < reference.size(); ++i) {
    // F32 weights: both paths quantize activations the same way only for quantized weights; here the
    // difference is float summation order (the merged product vs the two low-rank products).
    EXPECT_NEAR(with_adapter[i], reference[i], 1e-4 * (1 + std::fabs(reference[i]))) << "logit " << i;
    largest_change = std::max(largest_change, std::fabs(double(reference[i]) - base_logits[i]));
  }
  EXPECT_GT(largest_change, 0.05) << "the adapter should change the logits";
  for (const auto& path : {base, merged, adapter_path}) fs::remove(path);
}

TEST(Lora, MatchesTheMergedWeightsOnARandomModel) { expect_merged_weights_match(backend::LoraWeightType::F16); }
TEST(Lora, Q8MatchesTheMergedWeightsOfItsValuesOnARandomModel) { expect_merged_weights_match(backend::LoraWeightType::Q8); }

// ---- refusals --------------------------------------------------------------------------------------

std::string load_error(const std::string& path, const ModelConfig& config, const LoraLoadOptions& options = {}) {
  auto adapter = load_lora(path, config, options);
  EXPECT_FALSE(adapter);
  return adapter ? std::string() : adapter.error().message;
}

TEST(Lora, RefusesWhatDoesNotFitWithErrorsThatNameIt) {
  const std::string base = testing::write_tiny_llama("llama");
  auto model = Model::load(base, cpu());
  ASSERT_TRUE(model);
  const ModelConfig& config = (*model)->config();
  std::mt19937 rng(1);
  RandomLora lora;
  lora.pairs["blk.0.attn_q.weight"] = {random_f16(3 * 32, 0.1f, rng), random_f16(32 * 3, 0.1f, rng)};
  std::vector<std::string> files;
  auto expect = [&](const std::string& path, const std::string& needle, const LoraLoadOptions& options = {}) {
    files.push_back(path);
    const std::string message = load_error(path, config, options);
    EXPECT_NE(message.find(needle), std::string::npos) << message;
  };
  expect(write_lora_gguf("gemma3", lora), "adapter for architecture 'gemma3' but the base model is 'llama'");
  RandomLora wrong_shape;
  wrong_shape.pairs["blk.0.attn_k.weight"] = {random_f16(3 * 32, 0.1f, rng), random_f16(32 * 3, 0.1f, rng)};  // k is 32 -> 16
  expect(write_lora_gguf("llama", wrong_shape), "blk.0.attn_k: adapts a [32 -> 32] matrix but the base model's is [32 -> 16]");
  RandomLora embedding;
  embedding.pairs["token_embd.weight"] = {random_f16(3 * 32, 0.1f, rng), random_f16(8 * 3, 0.1f, rng)};
  expect(write_lora_gguf("llama", embedding), "adapts 'token_embd.weight'; tern adapts only attn_q");
  RandomLora deep;
  deep.pairs["blk.3.attn_q.weight"] = lora.pairs["blk.0.attn_q.weight"];
  expect(write_lora_gguf("llama", deep), "layer 3 but the base model has 1");
  expect(write_lora_gguf("llama", lora), "rank 3 is above the server's --max-lora-rank 2", {.scale = 1, .max_rank = 2});
  expect(write_lora_gguf("llama", {}, [](GgufBuilder& b) {
           b.tensor("blk.0.attn_q.weight.lora_a", {32, 3}, 0, testing::f32_bytes(std::vector<float>(96, 0.1f)));
         }),
         "has only one of lora_a / lora_b");
  // A mixture's feed-forward is its experts: a dense feed-forward adapter would have nothing to adapt.
  ModelConfig mixture = config;
  mixture.num_experts = 4, mixture.num_experts_used = 2;
  RandomLora ffn;
  ffn.pairs["blk.0.ffn_gate.weight"] = {random_f16(3 * 32, 0.1f, rng), random_f16(testing::kTinyFf * 3, 0.1f, rng)};
  files.push_back(write_lora_gguf("llama", ffn));
  EXPECT_NE(load_error(files.back(), mixture).find("blk.0.ffn_gate: the base model's feed-forward is a mixture of experts"),
            std::string::npos);
  EXPECT_TRUE(load_lora(files.back(), config, {})) << "the same adapter fits the dense model";
  expect(base, "is not a LoRA adapter (general.type is missing");
  expect("/nonexistent/adapter.gguf", "does not exist");
  // A PEFT directory with DoRA, and one whose safetensors header lies about its size.
  const fs::path dora = testing::temp_file("tern_peft", "");
  fs::create_directories(dora);
  std::ofstream(dora / "adapter_config.json") << R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_dora": true})";
  expect(dora.string(), "DoRA adapters (use_dora) are not supported");
  std::ofstream(dora / "adapter_config.json") << R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16})";
  std::ofstream(dora / "adapter_model.safetensors", std::ios::binary) << std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10);
  expect(dora.string(), "header length 4294967295 does not fit the file");
  fs::remove_all(dora);
  for (const auto& f : files) fs::remove(f);
}

}  // namespace
}  // namespace tern::model
