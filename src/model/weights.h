#pragma once
// The model's tensors, found by their GGUF names and checked against the shapes the config implies.
// Shapes are written ggml-style, [row length, rows]: a matrix [k, n] maps k inputs to n outputs.

#include <optional>
#include <vector>

#include "gguf/gguf_file.h"
#include "backend/backend.h"
#include "model/config.h"
#include "util/result.h"

namespace tern::model {

struct LayerWeights {
  std::vector<float> attn_norm;          // [n_embd]
  backend::Matrix wq;              // [n_embd, n_head * head_dim]
  backend::Matrix wk;              // [n_embd, n_kv_head * head_dim]
  backend::Matrix wv;              // [n_embd, n_kv_head * value_dim]
  backend::Matrix wo;              // [n_head * value_dim, n_embd]
  std::vector<float> bq, bk, bv;         // qwen2: biases of q, k, v (empty otherwise)
  std::vector<float> q_norm, k_norm;     // [head_dim] per head (qwen3, gemma3) or the whole width (olmoe)
  std::vector<float> post_attn_norm;     // gemma: [n_embd], after the attention output
  std::vector<float> ffn_norm;           // [n_embd]
  backend::Matrix w_gate;          // [n_embd, n_ff]   (dense feed-forward)
  backend::Matrix w_up;            // [n_embd, n_ff]
  backend::Matrix w_down;          // [n_ff, n_embd]
  std::vector<float> post_ffn_norm;      // gemma: [n_embd], after the feed-forward output
  // Mixture of experts: the router and each expert's matrices (slices of the file's 3-d tensors).
  backend::Matrix router;                                  // [n_embd, n_expert]
  std::vector<backend::Matrix> expert_gate, expert_up;     // [n_embd, n_ff_exp] each
  std::vector<backend::Matrix> expert_down;                // [n_ff_exp, n_embd] each
  backend::Matrix shared_gate_input;                       // qwen2moe: [n_embd, 1], the shared expert's sigmoid gate
  backend::Matrix shared_gate, shared_up, shared_down;     // qwen2moe: the shared expert
};

struct ModelWeights {
  const gguf::TensorInfo* token_embedding = nullptr;  // [n_embd, n_vocab], any dequantizable type
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;                     // [n_embd]
  backend::Matrix output;                             // [n_embd, n_vocab]; the embedding when tied
  bool output_is_embedding = false;                   // tied: embed through `output` (the file's pages are released)
  std::vector<float> rope_freqs;                      // Llama 3.1+: [rotary_dims / 2] RoPE frequency divisors, or empty
  std::vector<float> rope_factors_long, rope_factors_short;  // Phi-3 LongRoPE (128k models), or empty
};

/// Finds and checks every tensor (a missing or misshapen one is an error naming it) and hands each
/// matrix to the backend, which keeps or rearranges it for its kernels. A tensor in the file that the
/// architecture does not use is an error naming it too: it would change the computation if read.
Result<ModelWeights> load_weights(const gguf::GgufFile& file, const ModelConfig& config, backend::Backend& backend);

/// load_weights' checks (every tensor found, shaped and typed as the config implies, none unused)
/// without loading anything.
Result<void> check_weights(const gguf::GgufFile& file, const ModelConfig& config);

}  // namespace tern::model
