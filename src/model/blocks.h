#pragma once
// What the architectures' forward passes share above the backend's ops: the batch as the backend sees
// it, buffer sizing, and the final norm + output projection. Matrices are row-major [rows, width].

#include <initializer_list>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/weights.h"

namespace tern::model {

void grow(std::vector<float>& buffer, int64_t size);

/// The batch's positions, slots and block tables as the backend's attention reads them.
backend::TokenRows token_rows(const Batch& batch);

/// The model's attention shape for one layer (`window` > 0 on sliding-window layers).
backend::AttentionShape attention_shape(const ModelConfig& config, int64_t window);

/// The token embedding for the backend: the file's table, or the tied output matrix.
backend::EmbeddingTable embedding_table(const ModelWeights& weights);

/// Finds the batch's runs of consecutive rows that share an adapter, into ws.lora_runs.
void find_lora_runs(const Batch& batch, Workspace& ws);

/// Adds the LoRA terms of layer `layer`'s `targets` (the i-th into outputs[i], rows of that matrix's
/// output width) for every adapter run, from the input rows x (width x_width) the base matrices read.
/// Nothing to do, and no cost, when no row has an adapter.
void add_lora(backend::Backend& be, Workspace& ws, int64_t layer, std::initializer_list<std::pair<LoraTarget, float*>> targets,
              const float* x, int64_t x_width);

/// The input norm of the layer after `layer`, which add_residual_norm applies as it closes `layer`;
/// nullptr after the last (the output norm runs only on the rows that want logits).
const float* next_attn_norm(const ModelWeights& weights, int64_t layer);

/// The RoPE of the model's (global) layers: base, linear scaling and Llama 3's frequency factors.
backend::RopeSpec rope_spec(const ModelConfig& config, const ModelWeights& weights);

/// A vector's data, or nullptr when it is empty (an absent norm or bias).
inline const float* data_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

/// The start of every forward pass: buffers sized for the batch, the tokens embedded into ws.hidden
/// (returned), the batch's adapter runs found, and the first layer's input norm into ws.normed.
float* embed_batch(backend::Backend& be, const ModelConfig& c, const ModelWeights& w, const Batch& batch, Workspace& ws);

/// Layer `il`'s attention output projection (and its LoRA terms) from ws.attention into ws.projected.
void attention_output(backend::Backend& be, const ModelConfig& c, const LayerWeights& layer, int64_t il, int64_t m, Workspace& ws);

/// q, k and v of layer `il` from ws.normed (fused or separate matrices, biases, LoRA), q and k normed
/// as the architecture asks and rotated by `rope`, k and v stored in the cache.
void attention_inputs(backend::Backend& be, const ModelConfig& c, const LayerWeights& layer, int64_t il, const Batch& batch,
                      backend::KvCache& cache, const backend::RopeTable& rope, Workspace& ws);

/// The feed-forward block of layer `il` from ws.normed into ws.projected: gated (dense) or the
/// router's experts (plus Qwen2-MoE's gated shared expert).
void feed_forward(backend::Backend& be, const ModelConfig& c, const LayerWeights& layer, int64_t il, int64_t m, Workspace& ws);

/// Final norm and output projection for the rows that want logits.
void compute_logits(backend::Backend& be, const ModelConfig& config, const ModelWeights& weights, const Batch& batch,
                    const float* hidden, std::vector<float>& scratch_rows, std::vector<float>& logits);

}  // namespace tern::model
