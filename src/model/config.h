#pragma once
// Hyper-parameters of a model, read from GGUF metadata ("<arch>.*" keys) and checked for consistency.
// Every "<arch>.*" key in a file is either read here or known not to change the computation; any
// other is an error naming it, so that a model whose details tern does not implement is refused
// rather than answered differently (docs/inference.md lists the keys per architecture).

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "util/result.h"

namespace tern::model {

enum class Arch { LLAMA, QWEN2, QWEN3, QWEN2MOE, QWEN3MOE, OLMOE, PHI3, GEMMA2, GEMMA3 };

/// The architectures tern runs, by their GGUF names, in the order `tern models` lists them.
const std::vector<std::string>& supported_architectures();

/// How q and k are RMS-normed before RoPE: not at all, each head on its own (Qwen 3, Gemma 3), or the
/// whole projection (OLMoE).
enum class QkNorm { NONE, PER_HEAD, WHOLE };

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
  float rope_freq_scale = 1.0f;        ///< linear RoPE scaling, 1 / rope.scaling.factor
  float rope_freq_scale_sliding = 1.0f;  ///< on local layers (Gemma 3: none; Gemma 2: as the global ones)
  int64_t rotary_dims = 0;
  float rope_attn_factor = 1.0f;       ///< rope.scaling.attn_factor (Phi-3 LongRoPE, YaRN): multiplies RoPE's cos and sin
  int64_t rope_original_context = 0;   ///< Phi-3 LongRoPE: past this serving context the long factors apply
  /// YaRN (rope.scaling.type yarn): the context the model was pretrained at (rope.scaling.
  /// original_context_length, else context_length); 0: no YaRN.
  int64_t yarn_original_context = 0;
  backend::RopeStyle rope_style = backend::RopeStyle::NORM;
  float attention_scale = 1.0f;  ///< multiplies q.k
  float embedding_scale = 1.0f;  ///< multiplies token embeddings (Gemma: sqrt(n_embd))
  int64_t sliding_window = 0;    ///< 0: every layer attends to the whole context
  std::vector<bool> layer_is_sliding;
  QkNorm qk_norm = QkNorm::NONE;
  bool qkv_bias = false;           ///< Qwen 2 / Qwen2-MoE: biases on q, k and v
  bool fused_qkv = false;          ///< Phi-3: one attn_qkv matrix, and ffn_up holding gate then up
  bool post_norms = false;         ///< Gemma: RMSNorm of each block's output before the residual
  backend::Gating gating = backend::Gating::SILU;
  float attn_softcap = 0.0f;       ///< Gemma 2: attention scores soft-capped
  float final_softcap = 0.0f;      ///< Gemma 2: logits soft-capped
  // Mixture of experts (num_experts > 0): every layer's feed-forward is the router's top experts.
  int64_t num_experts = 0;
  int64_t num_experts_used = 0;
  int64_t expert_ffn_length = 0;
  int64_t shared_expert_ffn_length = 0;  ///< Qwen2-MoE: the always-on expert, gated by a sigmoid
  bool normalize_expert_weights = false;

  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }
  int64_t v_width() const { return num_kv_heads * value_dim; }
  bool is_moe() const { return num_experts > 0; }
  bool is_gemma() const { return arch == Arch::GEMMA2 || arch == Arch::GEMMA3; }
};

/// Reads the config of a supported architecture; a clear error for an unsupported one, bad values, or
/// a metadata key tern does not implement.
Result<ModelConfig> read_config(const gguf::GgufFile& file);

}  // namespace tern::model
