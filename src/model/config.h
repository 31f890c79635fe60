#pragma once
// Hyper-parameters of a model, read from GGUF metadata ("<arch>.*" keys) and checked for consistency.

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "kernels/cpu/ops.h"
#include "util/result.h"

namespace tern::model {

enum class Arch { LLAMA, QWEN2, GEMMA3 };

struct ModelConfig {
  Arch arch = Arch::LLAMA;
  std::string arch_name;
  int64_t vocab_size = 0;
  int64_t embedding_length = 0;  ///< n_embd
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;          ///< per-head size of Q and K
  int64_t value_dim = 0;         ///< per-head size of V
  int64_t ffn_length = 0;
  int64_t context_length = 0;    ///< trained context
  float norm_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_base_sliding = 10000.0f;  ///< Gemma 3's local layers
  int64_t rotary_dims = 0;
  kernels::RopeStyle rope_style = kernels::RopeStyle::NORM;
  float attention_scale = 1.0f;  ///< multiplies q.k
  float embedding_scale = 1.0f;  ///< multiplies token embeddings (Gemma: sqrt(n_embd))
  int64_t sliding_window = 0;    ///< 0: every layer attends to the whole context
  std::vector<bool> layer_is_sliding;

  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }
  int64_t v_width() const { return num_kv_heads * value_dim; }
};

/// Reads the config of a supported architecture; a clear error for an unsupported one or bad values.
Result<ModelConfig> read_config(const gguf::GgufFile& file);

}  // namespace tern::model
