#pragma once
// Building blocks shared by the architectures' forward passes. Matrices are row-major [rows, width].

#include <functional>
#include <span>
#include <vector>

#include "model/kv_cache.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/weights.h"

namespace tern::model {

void grow(std::vector<float>& buffer, int64_t size);

/// hidden[i] = embedding row of tokens[i] * scale (from the tied output matrix when there is one).
void embed_tokens(const ModelWeights& weights, const Batch& batch, int64_t n_embd, float scale, float* hidden,
                  kernels::ThreadPool& pool);

/// RMSNorm of each of `rows` rows of width n.
void rms_norm_rows(kernels::ThreadPool& pool, const float* x, const std::vector<float>& weight, float* out, int64_t rows,
                   int64_t n, float eps);

/// Several products of the same input in one parallel region, quantizing the input once per format:
/// outputs[j] = x W_j^T. (Q, K and V; gate and up.)
void project(kernels::ThreadPool& pool, std::span<const kernels::WeightMatrix* const> weights, const float* x, int64_t m,
             std::span<float* const> outputs, kernels::MatmulScratch& scratch);

/// Runs fn(begin, end) over [0, n) on the pool when n is large enough to pay for it, else inline:
/// element-wise steps of a long prompt would otherwise leave the other cores idle.
void parallel_range(kernels::ThreadPool& pool, int64_t n, int64_t min_parallel, const std::function<void(int64_t, int64_t)>& fn);

/// x[i] += y[i]
void add_residual(kernels::ThreadPool& pool, float* x, const float* y, int64_t n);

/// out[i] = act(gate[i]) * up[i] with act SiLU (Llama) or GELU (Gemma).
enum class Gating { SILU, GELU };
void gated_activation(kernels::ThreadPool& pool, Gating gating, const float* gate, const float* up, float* out, int64_t n);

/// out[i] += bias, per row.
void add_bias(float* x, const std::vector<float>& bias, int64_t rows);

/// Precomputes cos/sin of every token row's position for one RoPE base.
void rope_tables(const Batch& batch, int64_t rotary_dims, float base, std::vector<double>& cos, std::vector<double>& sin);
/// Applies RoPE to each head of each row, using tables from rope_tables.
void apply_rope(kernels::ThreadPool& pool, float* x, int64_t rows, int64_t num_heads, int64_t head_dim, int64_t rotary_dims, kernels::RopeStyle style,
                const std::vector<double>& cos, const std::vector<double>& sin);

/// Writes each row's K and V into the cache at its sequence position.
void store_kv(const Batch& batch, KvCache& cache, int64_t layer, const float* k, const float* v);

/// Causal attention of each row's query heads over its sequence's cached keys/values (GQA: query head
/// h reads KV head h / (num_heads / num_kv_heads)); `window` > 0 limits keys to the last `window`
/// positions. out is [rows, num_heads * value_dim].
void paged_attention(kernels::ThreadPool& pool, const ModelConfig& config, const Batch& batch, KvCache& cache,
                     int64_t layer, const float* q, int64_t window, float* out);

/// Final norm and output projection for the rows that want logits.
void compute_logits(kernels::ThreadPool& pool, const ModelConfig& config, const ModelWeights& weights, const Batch& batch,
                    const float* hidden, std::vector<float>& scratch_rows, kernels::MatmulScratch& scratch,
                    std::vector<float>& logits);

}  // namespace tern::model
