#pragma once
// LoRA adapters: low-rank updates W' = W + scale · B A of a base model's projections, applied per token
// row at run time so that rows of different adapters (and of the base model) share one forward pass.
//
// Two formats are read, both checked against the base model (architecture, layer count, every
// matrix's input and output size) with errors that name the tensor:
//   - llama.cpp's GGUF LoRA (convert_lora_to_gguf.py): general.type = adapter, adapter.type = lora,
//     adapter.lora.alpha; tensors "<base tensor>.lora_a" [in, rank] and ".lora_b" [rank, out].
//   - a PEFT directory: adapter_config.json (r, lora_alpha, use_rslora, target_modules) and
//     adapter_model.safetensors (…layers.N.self_attn.q_proj.lora_A.weight [rank, in], lora_B [out, rank]).
//     For the llama architecture the output rows of q and k are permuted as llama.cpp's converter
//     permutes the base model's (its RoPE pairs dimensions differently from Hugging Face's).
// scale = alpha / rank (alpha / sqrt(rank) with rsLoRA) x the user's scale; alpha 0 in a GGUF means
// scale = the user's scale, as llama.cpp reads it. Weights are kept in F16 or Q8 (LoraLoadOptions).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "util/result.h"

namespace tern::model {

/// The projections an adapter may change, in the order of LoraAdapter::Layer.
enum class LoraTarget { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLoraTargets = 7;

struct LoraAdapter {
  std::string path;
  std::string format;    ///< "gguf" or "peft"
  std::string identity;  ///< SHA-256 of the adapter's bytes and scale: what the prefix cache keys on
  int64_t max_rank = 0;
  float alpha = 0;
  float scale = 1;       ///< of a rank-max_rank matrix (each matrix carries its own)
  using Layer = std::array<backend::LoraMatrix, kNumLoraTargets>;
  std::vector<Layer> layers;  ///< one per base layer; rank 0 where the adapter has no matrix
  uint64_t bytes = 0;         ///< memory the weights take

  const backend::LoraMatrix& matrix(int64_t layer, LoraTarget target) const {
    return layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  }
};

struct LoraLoadOptions {
  float scale = 1.0f;    ///< the user's scale, on top of alpha / rank
  int64_t max_rank = 0;  ///< refuse adapters of a higher rank; 0: any
  /// F16 keeps the file's values to F16's precision; Q8 takes 55 % of F16's memory (8-bit blocks as
  /// llama.cpp's Q8_0; logits within the same tolerance of llama.cpp's).
  backend::LoraWeightType weight_type = backend::LoraWeightType::F16;
};

/// "q8" / "f16" (--lora-dtype's names), or an error that lists them.
Result<backend::LoraWeightType> parse_lora_weight_type(const std::string& name);
const char* lora_weight_type_name(backend::LoraWeightType type);

/// Loads a GGUF LoRA file or a PEFT directory (or its adapter_config.json / adapter_model.safetensors)
/// for a base model with `config`.
Result<std::shared_ptr<const LoraAdapter>> load_lora(const std::string& path, const ModelConfig& config,
                                                     const LoraLoadOptions& options = {});

}  // namespace tern::model
