#pragma once
// Small crafted llama models for tests: one layer, 2 heads of 16, an 8-token vocabulary; F32 tensors
// with values chosen by `fill` (default: all 0.02), any tensor renamed, reshaped or dropped by `mutate`.

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf_builder.h"

namespace tern::testing {

inline constexpr int kTinyEmbd = 32, kTinyFf = 64, kTinyVocab = 8;

using TensorMutator = std::function<bool(std::string& name, std::vector<uint64_t>& shape)>;
using TensorFill = std::function<std::vector<float>(const std::string& name, uint64_t count)>;

/// A temporary file name unique to this process: ctest runs tests in parallel processes.
inline std::string temp_file(const std::string& stem, const std::string& extension) {
  static int counter = 0;
  return (std::filesystem::temp_directory_path() /
          (stem + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + extension))
      .string();
}

inline std::string f32_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

/// The tiny model's tensors: name and ggml shape ([row length, rows]).
inline std::vector<std::pair<std::string, std::vector<uint64_t>>> tiny_llama_tensors() {
  return {{"token_embd.weight", {kTinyEmbd, kTinyVocab}},  {"blk.0.attn_norm.weight", {kTinyEmbd}},
          {"blk.0.attn_q.weight", {kTinyEmbd, kTinyEmbd}}, {"blk.0.attn_k.weight", {kTinyEmbd, kTinyEmbd / 2}},
          {"blk.0.attn_v.weight", {kTinyEmbd, kTinyEmbd / 2}}, {"blk.0.attn_output.weight", {kTinyEmbd, kTinyEmbd}},
          {"blk.0.ffn_norm.weight", {kTinyEmbd}},          {"blk.0.ffn_gate.weight", {kTinyEmbd, kTinyFf}},
          {"blk.0.ffn_up.weight", {kTinyEmbd, kTinyFf}},   {"blk.0.ffn_down.weight", {kTinyFf, kTinyEmbd}},
          {"output_norm.weight", {kTinyEmbd}}};
}

/// `extend` adds metadata or tensors of its own (after the model's).
inline std::string write_tiny_llama(const std::string& arch, const TensorMutator& mutate = {}, const TensorFill& fill = {},
                                    const std::function<void(GgufBuilder&)>& extend = {}) {
  GgufBuilder b;
  b.kv_string("general.architecture", arch).kv_u32(arch + ".context_length", 64).kv_u32(arch + ".embedding_length", kTinyEmbd)
      .kv_u32(arch + ".block_count", 1).kv_u32(arch + ".feed_forward_length", kTinyFf).kv_u32(arch + ".attention.head_count", 2)
      .kv_u32(arch + ".attention.head_count_kv", 1).kv_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f)
      .kv_string("tokenizer.ggml.model", "gpt2").kv_string("tokenizer.ggml.pre", "gpt-2")
      .kv_string_array("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b", "c", "d", "ab", "cd"})
      .kv_i32_array("tokenizer.ggml.token_type", {3, 3, 1, 1, 1, 1, 1, 1})
      .kv_string_array("tokenizer.ggml.merges", {"a b", "c d"})
      .kv_u32("tokenizer.ggml.bos_token_id", 0).kv_u32("tokenizer.ggml.eos_token_id", 1);
  for (auto [name, shape] : tiny_llama_tensors()) {
    if (mutate && !mutate(name, shape)) continue;
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    b.tensor(name, shape, 0, f32_bytes(fill ? fill(name, n) : std::vector<float>(n, 0.02f)));
  }
  if (extend) extend(b);
  const std::string path = temp_file("tern_tiny", ".gguf");
  std::ofstream(path, std::ios::binary) << b.build();
  return path;
}

}  // namespace tern::testing
