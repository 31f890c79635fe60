#include "model/config.h"

#include <cmath>

namespace tern::model {
namespace {

// Bounds that no real model comes near; they keep a hostile file from asking for absurd buffers.
constexpr int64_t kMaxDimension = 1 << 20;
constexpr int64_t kMaxLayers = 1024;

}  // namespace

Result<ModelConfig> read_config(const gguf::GgufFile& file) {
  ModelConfig c;
  auto arch = file.get_string("general.architecture");
  if (!arch) return std::unexpected(arch.error());
  c.arch_name = *arch;
  if (c.arch_name == "llama") c.arch = Arch::LLAMA;
  else if (c.arch_name == "qwen2") c.arch = Arch::QWEN2;
  else if (c.arch_name == "gemma3") c.arch = Arch::GEMMA3;
  else return fail("{}: architecture '{}' is not supported (llama, qwen2, gemma3 are)", file.name(), c.arch_name);

  const std::string p = c.arch_name + ".";
  auto get = [&](const std::string& key, int64_t& out) -> Result<void> {
    auto v = file.get_uint(p + key);
    if (!v) return std::unexpected(v.error());
    if (*v == 0 || *v > static_cast<uint64_t>(kMaxDimension)) return fail("{}: {}{} = {} is out of range", file.name(), p, key, *v);
    out = static_cast<int64_t>(*v);
    return {};
  };
  for (auto [key, slot] : {std::pair{"embedding_length", &c.embedding_length}, std::pair{"block_count", &c.num_layers},
                           std::pair{"attention.head_count", &c.num_heads}, std::pair{"feed_forward_length", &c.ffn_length},
                           std::pair{"context_length", &c.context_length}}) {
    if (auto ok = get(key, *slot); !ok) return std::unexpected(ok.error());
  }
  if (c.num_layers > kMaxLayers) return fail("{}: {} layers is out of range", file.name(), c.num_layers);
  c.num_kv_heads = c.num_heads;
  if (file.find(p + "attention.head_count_kv")) {
    if (auto ok = get("attention.head_count_kv", c.num_kv_heads); !ok) return std::unexpected(ok.error());
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return fail("{}: {} heads is not a multiple of {} KV heads", file.name(), c.num_heads, c.num_kv_heads);
  }
  c.head_dim = c.embedding_length / c.num_heads;
  if (file.find(p + "attention.key_length")) {
    if (auto ok = get("attention.key_length", c.head_dim); !ok) return std::unexpected(ok.error());
  }
  c.value_dim = c.head_dim;
  if (file.find(p + "attention.value_length")) {
    if (auto ok = get("attention.value_length", c.value_dim); !ok) return std::unexpected(ok.error());
  }
  c.rotary_dims = c.head_dim;
  if (file.find(p + "rope.dimension_count")) {
    if (auto ok = get("rope.dimension_count", c.rotary_dims); !ok) return std::unexpected(ok.error());
  }
  if (c.rotary_dims > c.head_dim || c.rotary_dims % 2 != 0) {
    return fail("{}: rope.dimension_count {} does not fit head size {}", file.name(), c.rotary_dims, c.head_dim);
  }
  if (auto eps = file.get_float(p + "attention.layer_norm_rms_epsilon")) c.norm_eps = static_cast<float>(*eps);
  if (auto base = file.get_float(p + "rope.freq_base")) c.rope_base = static_cast<float>(*base);
  if (const gguf::Value* scaling = file.find(p + "rope.scaling.type")) {
    if (scaling->as_string() && *scaling->as_string() != "none") {
      return fail("{}: rope scaling '{}' is not supported yet", file.name(), *scaling->as_string());
    }
  }
  if (auto tokens = file.get_array("tokenizer.ggml.tokens")) c.vocab_size = static_cast<int64_t>((*tokens)->size);

  c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  c.layer_is_sliding.assign(static_cast<size_t>(c.num_layers), false);
  switch (c.arch) {
    case Arch::LLAMA:
      c.rope_style = kernels::RopeStyle::NORM;
      break;
    case Arch::QWEN2:
      c.rope_style = kernels::RopeStyle::NEOX;
      break;
    case Arch::GEMMA3: {
      c.rope_style = kernels::RopeStyle::NEOX;
      c.embedding_scale = std::sqrt(static_cast<float>(c.embedding_length));
      // Five local (sliding-window) layers, then one global layer; local layers use RoPE base 10k.
      if (auto window = file.get_uint(p + "attention.sliding_window")) c.sliding_window = static_cast<int64_t>(*window);
      int64_t pattern = 6;
      if (auto v = file.get_uint(p + "attention.sliding_window_pattern")) pattern = static_cast<int64_t>(*v);
      for (int64_t layer = 0; layer < c.num_layers; ++layer) {
        c.layer_is_sliding[layer] = c.sliding_window > 0 && pattern > 0 && layer % pattern < pattern - 1;
      }
      c.rope_base_sliding = 10000.0f;
      break;
    }
  }
  return c;
}

}  // namespace tern::model
