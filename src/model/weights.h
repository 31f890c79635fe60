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
  std::vector<float> q_norm, k_norm;     // gemma3: [head_dim], RMSNorm of each head of q and k
  std::vector<float> post_attn_norm;     // gemma3: [n_embd], after the attention output
  std::vector<float> ffn_norm;           // [n_embd]
  backend::Matrix w_gate;          // [n_embd, n_ff]
  backend::Matrix w_up;            // [n_embd, n_ff]
  backend::Matrix w_down;          // [n_ff, n_embd]
  std::vector<float> post_ffn_norm;      // gemma3: [n_embd], after the feed-forward output
};

struct ModelWeights {
  const gguf::TensorInfo* token_embedding = nullptr;  // [n_embd, n_vocab], any dequantizable type
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;                     // [n_embd]
  backend::Matrix output;                             // [n_embd, n_vocab]; the embedding when tied
  bool output_is_embedding = false;                   // tied: embed through `output` (the file's pages are released)
};

/// Finds and checks every tensor (a missing or misshapen one is an error naming it) and hands each
/// matrix to the backend, which keeps or rearranges it for its kernels.
Result<ModelWeights> load_weights(const gguf::GgufFile& file, const ModelConfig& config, backend::Backend& backend);

}  // namespace tern::model
