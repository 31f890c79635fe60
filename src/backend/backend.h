#pragma once
// The operations the forward passes call, behind one interface, so that a device backend (CUDA later)
// is a new folder (backend/cuda/) rather than edits through every architecture file. The CPU backend
// (backend/cpu/) is the first and the reference.
//
// The interface speaks of pointers to float rows and of shapes; it knows nothing of models, requests or
// scheduling (model/ sits above it, engine/ above that). Memory that a device would hold is created
// through it: weight matrices (load_matrix: the backend picks their layout), the KV cache
// (make_kv_cache) and the ops' scratch (inside each backend). Activation rows are host floats today;
// a device backend will own those too when it comes.
//
// Every op exists once per backend; each CPU op is tested against its scalar reference in
// tests/kernels/, and the forward passes end to end against llama.cpp's logits (tests/model/).

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/kv_cache.h"
#include "tensor/dtype.h"
#include "util/result.h"

namespace tern::backend {

/// A weight matrix of `num_rows` rows of `row_length` weights, stored as its backend chose (rearranged
/// for its kernels, or uploaded). The model keeps it and passes it back to the ops; only the backend
/// that made it looks inside.
class Matrix {
 public:
  Matrix() = default;
  Matrix(DType type, int64_t row_length, int64_t num_rows, std::shared_ptr<const void> impl)
      : type_(type), row_length_(row_length), num_rows_(num_rows), impl_(std::move(impl)) {}
  DType type() const { return type_; }
  int64_t row_length() const { return row_length_; }
  int64_t num_rows() const { return num_rows_; }
  /// Bytes of the matrix in its file's layout (what a decode step reads).
  uint64_t file_bytes() const { return dtype_bytes(dtype_info(type_), static_cast<uint64_t>(row_length_)) * num_rows_; }
  const void* impl() const { return impl_.get(); }

 private:
  DType type_ = DType::F32;
  int64_t row_length_ = 0;
  int64_t num_rows_ = 0;
  std::shared_ptr<const void> impl_;
};

/// The rows of a batch as attention sees them: each row's position and sequence slot, and each slot's
/// block table (its KV blocks in position order).
struct TokenRows {
  std::span<const int32_t> positions;
  std::span<const int32_t> seq_slots;
  std::span<const std::span<const int32_t>> block_tables;
  int64_t size() const { return static_cast<int64_t>(positions.size()); }
};

/// The token embedding: the file's table, or the tied output matrix when the backend rearranged it
/// (then the file's bytes may be gone and rows come from the matrix).
struct EmbeddingTable {
  DType type = DType::F32;
  std::span<const uint8_t> file_bytes;
  const Matrix* tied_output = nullptr;
};

struct AttentionShape {
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, value_dim = 0;
  float scale = 1.0f;    ///< multiplies q.k
  int64_t window = 0;    ///< > 0: keys limited to the last `window` positions (sliding-window layers)
  float softcap = 0.0f;  ///< > 0: scores become softcap * tanh(scale * q.k / softcap) before the softmax (Gemma 2)
};

/// Which pairs of a head RoPE rotates: NORM (x[2d], x[2d+1]: Llama) or NEOX (x[d], x[d + dims/2]: Qwen,
/// Gemma, Phi-3).
enum class RopeStyle { NORM, NEOX };

/// How positions become rotary angles: theta_d = pos * freq_scale * base^(-2d / rotary_dims) / freq_factors[d].
struct RopeSpec {
  int64_t rotary_dims = 0;
  float base = 10000.0f;
  float freq_scale = 1.0f;              ///< linear position scaling: 1 / rope.scaling.factor
  std::span<const float> freq_factors{};  ///< per-pair divisors (Llama 3.1's rope_freqs, rotary_dims / 2 values); empty: 1
  float attn_factor = 1.0f;             ///< multiplies cos and sin (Phi-3's LongRoPE: q.k scaled by its square)
  /// YaRN (ext_factor > 0): pair d's angle mixes the scaled angle with the unscaled one, all unscaled
  /// below the correction dim yarn_low and none above yarn_high (a linear ramp between), and cos and
  /// sin are further multiplied by 1 + 0.1 ln(1 / freq_scale), as llama.cpp's rope_yarn does.
  float ext_factor = 0.0f;
  float yarn_low = 0.0f, yarn_high = 0.0f;
};

/// cos/sin of every row's rotary angles for one RoPE, made once per forward pass and reused by every
/// layer.
struct RopeTable {
  int64_t rotary_dims = 0;
  std::vector<double> cos, sin;  // [rows][rotary_dims / 2]
};

enum class Gating { SILU, GELU };

/// A mixture-of-experts feed-forward block: a router picks `num_used` of the experts for each row
/// (softmax over the router's logits, the top `num_used` kept, their weights optionally renormalised
/// to sum to 1), and the row's output is the weighted sum of the chosen experts' gated feed-forwards,
/// down(act(gate x) * up x).
struct ExpertsLayer {
  const Matrix* router = nullptr;  ///< [n_embd -> num_experts]
  std::span<const Matrix> gate, up, down;  ///< one per expert
  int64_t num_used = 0;
  bool normalize_weights = false;
  Gating gating = Gating::SILU;
};

/// How an adapter's weights are kept: F16 (the file's values to F16's precision), or Q8 (int8 in blocks
/// of 32 values of a row with an F32 scale each, as llama.cpp's Q8_0; 55 % of the bytes, each value
/// within half a step, the block's largest / 254, of the file's).
enum class LoraWeightType { F16, Q8 };

/// One LoRA adapter's low-rank update of one weight matrix: the projection becomes
/// x W^T + scale · (x A^T) B^T. A is [rank, in] and B is kept transposed, [rank, out], in host memory
/// (a device backend would upload them when it comes).
struct LoraMatrix {
  int64_t rank = 0, in = 0, out = 0;  ///< rank 0: the adapter leaves this matrix alone
  float scale = 1.0f;                 ///< alpha / rank x the user's scale
  LoraWeightType type = LoraWeightType::F16;
  std::vector<uint8_t> a, b_t;            ///< the values, row-major: 2 bytes each (F16) or 1 (Q8)
  std::vector<float> a_scales, b_scales;  ///< Q8: one per 32 values of a row (the last block may be short)
  uint64_t bytes() const { return a.size() + b_t.size() + (a_scales.size() + b_scales.size()) * sizeof(float); }
  /// Stores A ([rank][in] floats) and B transposed ([rank][out]) as `type`; rank, in and out set first.
  void set_weights(LoraWeightType type, std::span<const float> a_values, std::span<const float> b_t_values);
};

/// Adds `lora`'s update to rows [first_row, first_row + num_rows) of `out` (rows of lora->out floats),
/// computed from the same rows of the op's input.
struct LoraUpdate {
  const LoraMatrix* lora = nullptr;
  int64_t first_row = 0, num_rows = 0;
  float* out = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int num_threads() const = 0;

  // ---- Memory created through the backend.
  /// A matrix from `data` (the file's bytes, row-major, `num_rows` rows of `row_length`): kept in
  /// place or rearranged for this backend's kernels. `data_is_file_map`: its pages may be released as
  /// they are copied. An error when the backend cannot compute with this type or shape.
  virtual Result<Matrix> load_matrix(DType type, int64_t row_length, int64_t num_rows, const uint8_t* data,
                                     bool data_is_file_map) = 0;
  virtual std::unique_ptr<KvCache> make_kv_cache(const KvCacheShape& shape, int64_t num_blocks) = 0;

  // ---- Ops. Rows are row-major floats; `m` is the number of rows.
  /// out[i] = embedding row of tokens[i] * scale.
  virtual void embed(const EmbeddingTable& table, std::span<const int32_t> tokens, int64_t width, float scale, float* out) = 0;
  /// RMSNorm of each of `rows` rows of width n, times `weight` (n values).
  virtual void rms_norm(const float* x, const float* weight, float* out, int64_t rows, int64_t n, float eps) = 0;
  /// outputs[j] = x W_j^T for every j, in one pass over x (Q, K and V; gate and up).
  virtual void project(std::span<const Matrix* const> weights, const float* x, int64_t m, std::span<float* const> outputs) = 0;
  /// out = x W^T.
  virtual void matmul(const Matrix& w, const float* x, int64_t m, float* out) = 0;
  /// Every update's LoRA term added to its rows of its output, from input rows x (width x_width): one
  /// call covers the adapters of a whole batch and the projections that share an input (Q, K, V).
  virtual void add_lora(std::span<const LoraUpdate> updates, const float* x, int64_t x_width) = 0;
  /// x[i][j] += bias[j] for each of `rows` rows of bias.size().
  virtual void add_bias(float* x, std::span<const float> bias, int64_t rows) = 0;
  /// The step between two blocks, row by row in one pass (one fork-join instead of three): y =
  /// rms_norm(y) * post_norm if post_norm is given (Gemma's norm of a block's output), x += y (the
  /// residual), then normed = rms_norm(x) * next_norm if next_norm is given (the next block's input).
  /// The same arithmetic as rms_norm and the plain sum one after the other, so the same bits.
  virtual void add_residual_norm(float* x, float* y, const float* post_norm, const float* next_norm, float* normed, int64_t rows,
                                 int64_t n, float eps) = 0;
  /// out[i] = act(gate[i]) * up[i], act SiLU or GELU.
  virtual void gated_activation(Gating gating, const float* gate, const float* up, float* out, int64_t n) = 0;
  virtual void rope_table(std::span<const int32_t> positions, const RopeSpec& spec, RopeTable& table) = 0;
  /// Queries and keys made ready for attention, row by row in one pass: every head of q (num_heads
  /// per row) and of k (num_kv_heads per row; k may be null with 0) RMS-normed by q_norm / k_norm
  /// (head_dim weights) when those are given (Gemma 3), then rotated by RoPE. The same arithmetic as
  /// rms_norm on each head then RoPE, so the same bits.
  virtual void norm_rope_qk(float* q, int64_t num_heads, float* k, int64_t num_kv_heads, int64_t m, int64_t head_dim,
                            const float* q_norm, const float* k_norm, float eps, RopeStyle style, const RopeTable& table) = 0;
  /// Each row's K and V into the cache at its position, layer `layer`.
  virtual void store_kv(KvCache& cache, int64_t layer, const TokenRows& rows, const float* k, const float* v) = 0;
  /// x[i] = cap * tanh(x[i] / cap) for n values (Gemma 2's final logits).
  virtual void soft_cap(float* x, int64_t n, float cap) = 0;
  /// y[i][j] *= sigmoid(gate[i]) for each of `rows` rows of n (Qwen2-MoE's gate on its shared expert).
  virtual void sigmoid_scale_rows(float* y, const float* gate, int64_t rows, int64_t n) = 0;
  /// out = the experts' feed-forward of each of the m rows of x (width n_embd), each row through only
  /// the experts its router picks: the experts' weights are read for the rows routed to them, so a
  /// decode step reads num_used experts' matrices, not all of them.
  virtual void experts_ffn(const ExpertsLayer& layer, const float* x, int64_t m, float* out) = 0;
  /// Causal attention of each row's query heads over its sequence's cached K/V (GQA: query head h reads
  /// KV head h / (num_heads / num_kv_heads)); out is [rows, num_heads * value_dim].
  virtual void attention(KvCache& cache, int64_t layer, const TokenRows& rows, const AttentionShape& shape, const float* q,
                         float* out) = 0;
};

/// The CPU backend: SIMD kernels chosen at run time (AVX-512 VNNI, AVX2, scalar), `num_threads` threads
/// (0: one per core).
std::unique_ptr<Backend> make_cpu_backend(int num_threads);

}  // namespace tern::backend
