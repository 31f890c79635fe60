// The CPU backend: the ops of backend.h on the kernels of kernels/cpu/ and a persistent thread pool.
// Weight matrices are kernels::WeightMatrix (interleaved where this machine has a kernel for that).

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_lora.h"
#include "kernels/cpu/lora.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_act.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vector_ops.h"
#include "tensor/dequantize.h"

namespace tern::backend {
namespace {

const kernels::WeightMatrix& cpu_matrix(const Matrix& m) { return *static_cast<const kernels::WeightMatrix*>(m.impl()); }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads) : pool_(num_threads) {}

  const char* name() const override { return "cpu"; }
  int num_threads() const override { return pool_.num_threads(); }

  Result<Matrix> load_matrix(DType type, int64_t row_length, int64_t num_rows, const uint8_t* data,
                             bool data_is_file_map) override {
    // Checked before anything is rearranged (and file pages released).
    const int64_t k = row_length;
    if (k % dtype_info(type).block_size != 0) return fail("rows are not whole blocks");
    auto w = std::make_shared<kernels::WeightMatrix>(
        kernels::make_weight_matrix(type, row_length, num_rows, data, kernels::WeightLayout::FASTEST, data_is_file_map));
    if (w->kernel.fn == nullptr) return fail("no matrix kernel for type {}", dtype_info(type).name);
    if (w->kernel.act_format == kernels::ActFormat::Q8 && k % 32 != 0) return fail("rows of {} are not a multiple of 32", k);
    if (w->kernel.act_format == kernels::ActFormat::Q8K && k % 256 != 0) return fail("rows of {} are not a multiple of 256", k);
    return Matrix(type, row_length, num_rows, std::move(w));
  }

  std::unique_ptr<KvCache> make_kv_cache(const KvCacheShape& shape, int64_t num_blocks) override {
    return std::make_unique<KvCache>(shape, num_blocks);
  }

  void embed(const EmbeddingTable& table, std::span<const int32_t> tokens, int64_t width, float scale, float* out) override {
    const size_t row_bytes = dtype_bytes(dtype_info(table.type), static_cast<uint64_t>(width));
    const kernels::WeightMatrix* tied = table.tied_output != nullptr ? &cpu_matrix(*table.tied_output) : nullptr;
    pool_.parallel_for(static_cast<int64_t>(tokens.size()), [&](int64_t begin, int64_t end) {
      thread_local std::vector<uint8_t> file_row;
      for (int64_t i = begin; i < end; ++i) {
        float* row = out + i * width;
        std::span<const uint8_t> bytes = table.file_bytes.subspan(static_cast<size_t>(tokens[i]) * row_bytes, row_bytes);
        if (tied != nullptr && tied->interleaved) {  // the file's pages were released when it was rearranged
          file_row.resize(row_bytes);
          kernels::copy_file_row(*tied, tokens[i], file_row.data());
          bytes = file_row;
        }
        (void)dequantize(table.type, bytes, {row, static_cast<size_t>(width)});
        if (scale != 1.0f) {
          for (int64_t j = 0; j < width; ++j) row[j] *= scale;
        }
      }
    });
  }

  void rms_norm(const float* x, const float* weight, float* out, int64_t rows, int64_t n, float eps) override {
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) kernels::rms_norm(x + i * n, weight, out + i * n, n, eps);
    };
    if (rows >= 16) pool_.parallel_for(rows, body);
    else body(0, rows);
  }

  void project(std::span<const Matrix* const> weights, const float* x, int64_t m, std::span<float* const> outputs) override {
    project_inputs(weights, {}, x, m, outputs);
  }

  void matmul(const Matrix& w, const float* x, int64_t m, float* out) override {
    kernels::matmul(pool_, cpu_matrix(w), x, m, out, scratch_);
  }

  void add_lora(std::span<const LoraUpdate> updates, const float* x, int64_t x_width) override {
    // One task per block of up to kLoraBlock rows of one update: a decode step has a row or two per
    // adapter, a prompt chunk many rows of one adapter; either way every thread gets work, and a
    // block reads its adapter's A and B once.
    constexpr int64_t kLoraBlock = 4;
    std::vector<int64_t>& first_task = lora_first_task_;
    first_task.assign(1, 0);
    for (const LoraUpdate& u : updates) first_task.push_back(first_task.back() + (u.num_rows + kLoraBlock - 1) / kLoraBlock);
    const kernels::LoraKernels& lora = kernels::lora_kernels();
    parallel_range(first_task.back(), 2, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> shrunk;
      size_t u = static_cast<size_t>(std::upper_bound(first_task.begin(), first_task.end(), begin) - first_task.begin() - 1);
      for (int64_t task = begin; task < end; ++task) {
        while (task >= first_task[u + 1]) ++u;
        const LoraUpdate& update = updates[u];
        const LoraMatrix& m = *update.lora;
        const int64_t first = (task - first_task[u]) * kLoraBlock;
        const int64_t rows = std::min(kLoraBlock, update.num_rows - first);
        const int64_t row = update.first_row + first;
        shrunk.resize(static_cast<size_t>(rows * m.rank));
        kernels::lora_add_rows(lora, cpu_lora_weights(m), x + row * x_width, x_width, update.out + row * m.out, m.out, rows, shrunk.data());
      }
    });
  }

  void add_bias(float* x, std::span<const float> bias, int64_t rows) override {
    if (bias.empty()) return;
    const auto n = static_cast<int64_t>(bias.size());
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < n; ++j) x[i * n + j] += bias[j];
    }
  }

  void add_residual_norm(float* x, float* y, const float* post_norm, const float* next_norm, float* normed, int64_t rows,
                         int64_t n, float eps) override {
    parallel_range(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float* x_row = x + i * n;
        float* y_row = y + i * n;
        if (post_norm != nullptr) kernels::rms_norm(y_row, post_norm, y_row, n, eps);
        for (int64_t j = 0; j < n; ++j) x_row[j] += y_row[j];
        if (next_norm != nullptr) kernels::rms_norm(x_row, next_norm, normed + i * n, n, eps);
      }
    });
  }

  void gated_activation(Gating gating, const float* gate, const float* up, float* out, int64_t n) override {
    parallel_range(n, 1 << 14, [&](int64_t begin, int64_t end) {
      if (gating == Gating::SILU) kernels::silu_mul(gate + begin, up + begin, out + begin, end - begin);
      else kernels::gelu_mul(gate + begin, up + begin, out + begin, end - begin);
    });
  }

  void rope_table(std::span<const int32_t> positions, const RopeSpec& spec, RopeTable& table) override {
    // Angles follow llama.cpp's float recurrence (theta *= base^(-2/d) per pair) rather than exact
    // powers: the few-ulp differences in early layers otherwise grow into different greedy tokens.
    // Frequency factors and linear scaling apply in llama.cpp's order too (theta / factor, then
    // times freq_scale).
    const int64_t half = spec.rotary_dims / 2;
    table.rotary_dims = spec.rotary_dims;
    table.cos.resize(positions.size() * static_cast<size_t>(half));
    table.sin.resize(table.cos.size());
    const float theta_scale = std::pow(spec.base, -2.0f / static_cast<float>(spec.rotary_dims));
    const bool has_factors = !spec.freq_factors.empty();
    // YaRN's per-pair mix of the unscaled angle into the scaled one (llama.cpp's rope_yarn_ramp, in
    // its float arithmetic), and its magnitude correction.
    std::vector<float> ramp(static_cast<size_t>(half), 0.0f);
    float scale = spec.attn_factor;
    if (spec.ext_factor != 0.0f) {
      for (int64_t d = 0; d < half; ++d) {
        const float y = (static_cast<float>(d) - spec.yarn_low) / std::max(0.001f, spec.yarn_high - spec.yarn_low);
        ramp[static_cast<size_t>(d)] = (1.0f - std::min(1.0f, std::max(0.0f, y))) * spec.ext_factor;
      }
      scale *= 1.0f + 0.1f * std::log(1.0f / spec.freq_scale);
    }
    for (size_t i = 0; i < positions.size(); ++i) {
      float theta = static_cast<float>(positions[i]);
      for (int64_t d = 0; d < half; ++d) {
        const float unscaled = has_factors ? theta / spec.freq_factors[d] : theta;
        float angle = spec.freq_scale * unscaled;
        if (spec.ext_factor != 0.0f) {
          const float mix = ramp[static_cast<size_t>(d)];
          angle = angle * (1.0f - mix) + unscaled * mix;
        }
        table.cos[i * half + d] = std::cos(angle) * scale;
        table.sin[i * half + d] = std::sin(angle) * scale;
        theta *= theta_scale;
      }
    }
  }

  void norm_rope_qk(float* q, int64_t num_heads, float* k, int64_t num_kv_heads, int64_t m, int64_t head_dim,
                    const float* q_norm, const float* k_norm, float eps, RopeStyle style, const RopeTable& table) override {
    const int64_t half = table.rotary_dims / 2;
    const auto norm_and_rotate = [&](float* row, int64_t heads, const float* norm, const double* c, const double* s) {
      for (int64_t h = 0; h < heads; ++h) {
        float* head = row + h * head_dim;
        if (norm != nullptr) kernels::rms_norm(head, norm, head, head_dim, eps);
        for (int64_t d = 0; d < half; ++d) {
          const int64_t a = style == RopeStyle::NORM ? 2 * d : d;
          const int64_t b = style == RopeStyle::NORM ? 2 * d + 1 : d + half;
          const float x0 = head[a], x1 = head[b];
          const float cos_theta = static_cast<float>(c[d]), sin_theta = static_cast<float>(s[d]);
          head[a] = x0 * cos_theta - x1 * sin_theta;
          head[b] = x0 * sin_theta + x1 * cos_theta;
        }
      }
    };
    parallel_range(m, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const double* c = table.cos.data() + i * half;
        const double* s = table.sin.data() + i * half;
        norm_and_rotate(q + i * num_heads * head_dim, num_heads, q_norm, c, s);
        if (k != nullptr) norm_and_rotate(k + i * num_kv_heads * head_dim, num_kv_heads, k_norm, c, s);
      }
    });
  }

  void soft_cap(float* x, int64_t n, float cap) override {
    const float inverse = 1.0f / cap;
    parallel_range(n, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) x[i] = cap * std::tanh(x[i] * inverse);
    });
  }

  void sigmoid_scale_rows(float* y, const float* gate, int64_t rows, int64_t n) override {
    for (int64_t i = 0; i < rows; ++i) {
      const float g = 1.0f / (1.0f + std::exp(-gate[i]));
      for (int64_t j = 0; j < n; ++j) y[i * n + j] *= g;
    }
  }

  void experts_ffn(const ExpertsLayer& layer, const float* x, int64_t m, float* out) override {
    const int64_t n = layer.router->row_length();
    const int64_t num_experts = layer.router->num_rows();
    const int64_t k = layer.num_used;
    const int64_t ffn = layer.gate[0].num_rows();
    // Route: softmax over the router's logits, the top k, their weights (as llama.cpp's build_moe_ffn).
    experts_.logits.resize(static_cast<size_t>(m * num_experts));
    matmul(*layer.router, x, m, experts_.logits.data());
    experts_.chosen.resize(static_cast<size_t>(m * k));
    experts_.weights.resize(static_cast<size_t>(m * k));
    std::vector<int32_t>& order = experts_.order;
    order.resize(static_cast<size_t>(num_experts));
    for (int64_t i = 0; i < m; ++i) {
      float* p = experts_.logits.data() + i * num_experts;
      const float max = *std::max_element(p, p + num_experts);
      double sum = 0;
      for (int64_t e = 0; e < num_experts; ++e) sum += (p[e] = std::exp(p[e] - max));
      const float inverse = static_cast<float>(1.0 / sum);
      for (int64_t e = 0; e < num_experts; ++e) p[e] *= inverse;
      for (int64_t e = 0; e < num_experts; ++e) order[e] = static_cast<int32_t>(e);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      float total = 0;
      for (int64_t j = 0; j < k; ++j) total += p[order[j]];
      total = std::max(total, 6.103515625e-5f);  // llama.cpp clamps the sum to F16's smallest normal
      for (int64_t j = 0; j < k; ++j) {
        float w = p[order[j]];
        if (layer.normalize_weights) w /= total;
        experts_.chosen[i * k + j] = order[j];
        experts_.weights[i * k + j] = w;
      }
    }
    grow_floats(experts_.slots, m * k * n);
    if (m == 1) {
      // One row (a decode step): its k experts share the input, so their gate and up projections run
      // in one parallel region and their down projections in another.
      for (auto* buffer : {&experts_.gate, &experts_.up}) grow_floats(*buffer, k * ffn);
      experts_.matrices.clear();
      experts_.outputs.clear();
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = experts_.chosen[j];
        experts_.matrices.insert(experts_.matrices.end(), {&layer.gate[e], &layer.up[e]});
        experts_.outputs.insert(experts_.outputs.end(), {experts_.gate.data() + j * ffn, experts_.up.data() + j * ffn});
      }
      project_inputs(experts_.matrices, {}, x, 1, experts_.outputs);
      gated_activation(layer.gating, experts_.gate.data(), experts_.up.data(), experts_.gate.data(), k * ffn);
      experts_.matrices.clear();
      experts_.outputs.clear();
      experts_.inputs.clear();
      for (int64_t j = 0; j < k; ++j) {
        experts_.matrices.push_back(&layer.down[experts_.chosen[j]]);
        experts_.inputs.push_back(experts_.gate.data() + j * ffn);
        experts_.outputs.push_back(experts_.slots.data() + j * n);
      }
      project_inputs(experts_.matrices, experts_.inputs, nullptr, 1, experts_.outputs);
      for (int64_t j = 0; j < k; ++j) {
        for (int64_t c = 0; c < n; ++c) experts_.slots[j * n + c] *= experts_.weights[j];
      }
    } else {
      run_experts_over_routed_rows(layer, x, m, n, k, ffn, num_experts);
    }
    for (int64_t i = 0; i < m; ++i) {
      float* row = out + i * n;
      std::copy_n(experts_.slots.data() + i * k * n, n, row);
      for (int64_t j = 1; j < k; ++j) {
        const float* slot = experts_.slots.data() + (i * k + j) * n;
        for (int64_t c = 0; c < n; ++c) row[c] += slot[c];
      }
    }
  }

  void store_kv(KvCache& cache, int64_t layer, const TokenRows& rows, const float* k, const float* v) override {
    const kernels::VectorOps& ops = kernels::vector_ops();
    const int64_t bs = cache.block_size();
    for (int64_t i = 0; i < rows.size(); ++i) {
      const int32_t pos = rows.positions[i];
      const int32_t block = rows.block_tables[rows.seq_slots[i]][pos / bs];
      const int64_t offset = pos % bs;
      ops.to_f16(cache.key_width(), k + i * cache.key_width(), cache.keys(layer, block) + offset * cache.key_width());
      ops.to_f16(cache.value_width(), v + i * cache.value_width(), cache.values(layer, block) + offset * cache.value_width());
    }
  }

  void attention(KvCache& cache, int64_t layer, const TokenRows& rows, const AttentionShape& shape, const float* q,
                 float* out) override {
    const kernels::VectorOps& ops = kernels::vector_ops();
    const int64_t num_heads = shape.num_heads;
    const int64_t group = shape.num_heads / shape.num_kv_heads;
    const int64_t head_dim = shape.head_dim, value_dim = shape.value_dim;
    const int64_t bs = cache.block_size();
    // A task is a tile of rows and some heads sharing one KV head: each key and value is read and
    // converted once for all the tile's queries (the heads: attention_heads_per_task), not once per
    // row. A tile is up to kTileRows consecutive rows of one sequence (a prompt chunk's rows) or one
    // row; the positions before the tile's first row go once for every query, then each row's own. A
    // query's arithmetic is the same in any tile (the kernels' results do not depend on how many
    // queries they take, and each query's keys and values are summed in position order), so a row's
    // result never depends on the batch. (Grouping decode rows of sequences sharing cached blocks was
    // tried: bit-identical, but no gain measured on a shared-prompt workload.)
    const std::vector<int64_t> tiles = attention_tiles(rows, shape.window);  // tile t: rows [tiles[t], tiles[t + 1])
    const int64_t num_tiles = static_cast<int64_t>(tiles.size()) - 1;
    const int64_t heads_per_task = attention_heads_per_task(num_tiles * num_heads, group);
    const int64_t tasks_per_tile = num_heads / heads_per_task;
    const int hpt = static_cast<int>(heads_per_task);
    pool_.parallel_for(num_tiles * tasks_per_tile, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> scores, queries, results;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t first_head = (task % tasks_per_tile) * heads_per_task, kv_head = first_head / group;
        const int64_t row0 = tiles[task / tasks_per_tile], n = tiles[task / tasks_per_tile + 1] - row0;
        const int num_q = hpt * static_cast<int>(n);
        auto position = [&](int64_t m) -> int64_t { return rows.positions[row0 + m]; };
        const std::span<const int32_t> table = rows.block_tables[rows.seq_slots[row0]];  // the tile's sequence
        // A tile's rows are at consecutive positions and share `first` (attention_tiles); every row
        // attends to [first, shared_end).
        const int64_t first = shape.window > 0 ? std::max<int64_t>(0, position(0) - shape.window + 1) : 0;
        const int64_t shared_end = position(0) + 1;
        const int64_t stride = position(n - 1) - first + 1;  // scores per query
        // Like llama.cpp (F16 KV cache, no flash attention), the queries are rounded to F16 for q.k and
        // the attention weights are rounded to F16 before weighting V: same inputs, closer results.
        queries.resize(static_cast<size_t>(num_q * head_dim));
        for (int64_t m = 0; m < n; ++m) {
          ops.round_f16(hpt * head_dim, q + ((row0 + m) * num_heads + first_head) * head_dim, queries.data() + m * hpt * head_dim);
        }
        scores.resize(static_cast<size_t>(num_q * stride));
        // Positions [from, to) of the sequence, block by block: fn(this KV head's keys (or values) from the
        // block's first position in range, their row stride, how many positions, the first of them),
        // the block kPrefetchBlocks ahead asked for first.
        auto for_each_block = [&](int64_t from, int64_t to, bool keys, auto&& fn) {
          const int64_t width = keys ? cache.key_width() : cache.value_width(), dim = keys ? head_dim : value_dim, head = kv_head * dim;
          auto block_data = [&](int64_t block) { return (keys ? cache.keys(layer, table[block]) : cache.values(layer, table[block])) + head; };
          for (int64_t j = from; j < to;) {
            const int64_t count = std::min(bs - j % bs, to - j);
            if (const int64_t ahead = j / bs + kPrefetchBlocks; ahead * bs < to) prefetch_rows(block_data(ahead), bs, width, dim);
            fn(block_data(j / bs) + (j % bs) * width, width, count, j);
            j += count;
          }
        };
        // Scores of the queries at `query` for positions [from, to) (at `score`, stride apart).
        auto dot_range = [&](int64_t from, int64_t to, const float* query, int count_q, float* score) {
          for_each_block(from, to, true, [&](const uint16_t* keys, int64_t width, int64_t count, int64_t j) {
            ops.dot_rows_f16(query, count_q, keys, width, count, head_dim, score + (j - first), stride);
          });
        };
        dot_range(first, shared_end, queries.data(), num_q, scores.data());
        for (int64_t m = 1; m < n; ++m) {
          dot_range(shared_end, position(m) + 1, queries.data() + m * hpt * head_dim, hpt, scores.data() + m * hpt * stride);
        }
        for (int64_t m = 0; m < n; ++m) {
          const int64_t length = position(m) - first + 1;
          for (int64_t g = 0; g < hpt; ++g) {
            float* row_scores = scores.data() + (m * hpt + g) * stride;
            if (shape.softcap > 0.0f) {
              // llama.cpp's order: scale, times 1/cap, tanh, times cap; then a softmax of scale 1.
              const float inverse_cap = 1.0f / shape.softcap;
              for (float& score : std::span(row_scores, static_cast<size_t>(length))) {
                score = shape.softcap * std::tanh(score * shape.scale * inverse_cap);
              }
            }
            ops.softmax_f16(length, shape.softcap > 0.0f ? 1.0f : shape.scale, row_scores);
          }
        }
        results.assign(static_cast<size_t>(num_q * value_dim), 0.0f);
        auto axpy_range = [&](int64_t from, int64_t to, const float* weights, int count_q, float* result) {
          for_each_block(from, to, false, [&](const uint16_t* values, int64_t width, int64_t count, int64_t j) {
            ops.axpy_rows_f16(weights + (j - first), stride, count_q, values, width, count, value_dim, result);
          });
        };
        axpy_range(first, shared_end, scores.data(), num_q, results.data());
        for (int64_t m = 0; m < n; ++m) {
          axpy_range(shared_end, position(m) + 1, scores.data() + m * hpt * stride, hpt, results.data() + m * hpt * value_dim);
          std::copy_n(results.data() + m * hpt * value_dim, hpt * value_dim, out + ((row0 + m) * num_heads + first_head) * value_dim);
        }
      }
    });
  }

 private:
  static constexpr int64_t kTileRows = 4;
  // A sequence's blocks are scattered in the cache, so the hardware prefetcher loses the stream at
  // every block: attention asks for the block kPrefetchBlocks ahead while it works on this one (one
  // block of a decode row's work is shorter than a DRAM access).
  static constexpr int64_t kPrefetchBlocks = 4;

  /// Asks for `rows` rows of `width` F16 values, `stride` apart, to be brought into the cache.
  static void prefetch_rows(const uint16_t* first, int64_t rows, int64_t stride, int64_t width) {
    for (int64_t r = 0; r < rows; ++r) {
      const auto* row = reinterpret_cast<const char*>(first + r * stride);
      for (int64_t byte = 0; byte < width * 2; byte += 64) __builtin_prefetch(row + byte);
    }
  }

  /// Runs of up to kTileRows rows of one sequence at consecutive positions (a prompt chunk), each
  /// other row alone. With a sliding window, only rows whose window still starts at 0 go together (a
  /// tile's rows share their first position). Returns each tile's first row, then rows.size().
  static std::vector<int64_t> attention_tiles(const TokenRows& rows, int64_t window) {
    std::vector<int64_t> tiles{0};
    auto unwindowed = [&](int64_t i) { return window <= 0 || rows.positions[i] < window; };
    for (int64_t i = 0; i < rows.size();) {
      int64_t end = i + 1;
      while (end < rows.size() && end - i < kTileRows && unwindowed(end) && rows.seq_slots[end] == rows.seq_slots[i] &&
             rows.positions[end] == rows.positions[i] + (end - i)) {
        ++end;
      }
      tiles.push_back(end);
      i = end;
    }
    return tiles;
  }

  /// How many heads of a KV group (a divisor of `group`) one attention task takes. A task reads its
  /// keys and values once for all its heads, and each head adds about half a read's worth of
  /// arithmetic, so a task of h heads costs about 2 + h (in half-reads), and the op takes as many such
  /// costs as the busiest thread has tasks: the cheapest choice wins, ties to more heads. A one-row
  /// decode of Gemma 3 (4 heads on one KV head, 2 threads) gets 2 tasks of 2 heads; of SmolLM2 (3 groups
  /// of 3) 3 tasks of 3 heads rather than 9 of one, which read every key three times.
  int64_t attention_heads_per_task(int64_t num_head_rows, int64_t group) const {
    const int64_t threads = pool_.num_threads();
    int64_t best = 1, best_cost = -1;
    for (int64_t heads = group; heads >= 1; --heads) {
      if (group % heads != 0) continue;
      const int64_t tasks = num_head_rows / heads;
      const int64_t cost = (tasks + threads - 1) / threads * (2 + heads);
      if (best_cost < 0 || cost < best_cost) best = heads, best_cost = cost;
    }
    return best;
  }

  /// fn(begin, end) over [0, n) on the pool when n is large enough to pay for it, else inline:
  /// element-wise steps of a long prompt would otherwise leave the other cores idle.
  void parallel_range(int64_t n, int64_t min_parallel, const std::function<void(int64_t, int64_t)>& fn) {
    if (n >= min_parallel) pool_.parallel_for(n, fn);
    else fn(0, n);
  }

  void run_experts_over_routed_rows(const ExpertsLayer& layer, const float* x, int64_t m, int64_t n, int64_t k, int64_t ffn,
                                    int64_t num_experts) {
    // Each expert once, over the rows routed to it (gathered), into that row's slot (experts_.slots);
    // experts_ffn then sums each row's slots in rank order (llama.cpp's order of additions).
    for (int64_t e = 0; e < num_experts; ++e) {
      experts_.rows.clear();
      for (int64_t s = 0; s < m * k; ++s) {
        if (experts_.chosen[s] == e) experts_.rows.push_back(s);
      }
      const auto count = static_cast<int64_t>(experts_.rows.size());
      if (count == 0) continue;  // an expert no row picked: its weights are not read
      grow_floats(experts_.input, count * n);
      for (int64_t r = 0; r < count; ++r) std::copy_n(x + (experts_.rows[r] / k) * n, n, experts_.input.data() + r * n);
      for (auto* buffer : {&experts_.gate, &experts_.up}) grow_floats(*buffer, count * ffn);
      grow_floats(experts_.output, count * n);
      const Matrix* gate_up[] = {&layer.gate[e], &layer.up[e]};
      float* gate_up_out[] = {experts_.gate.data(), experts_.up.data()};
      project(gate_up, experts_.input.data(), count, gate_up_out);
      gated_activation(layer.gating, experts_.gate.data(), experts_.up.data(), experts_.gate.data(), count * ffn);
      matmul(layer.down[e], experts_.gate.data(), count, experts_.output.data());
      for (int64_t r = 0; r < count; ++r) {
        const int64_t slot = experts_.rows[r];
        const float w = experts_.weights[slot];
        const float* y = experts_.output.data() + r * n;
        float* target = experts_.slots.data() + slot * n;
        for (int64_t j = 0; j < n; ++j) target[j] = y[j] * w;
      }
    }
  }

  /// outputs[j] = inputs[j] W_j^T (m rows each; every input of W_j's row length), or x W_j^T when
  /// `inputs` is empty, in one parallel region: each distinct (input, activation format) is quantized
  /// once, then the rows of all matrices are split across threads together. Q, K and V share one
  /// input; a decode step's experts have one each (their down projections).
  void project_inputs(std::span<const Matrix* const> weights, std::span<const float* const> inputs, const float* x, int64_t m,
                      std::span<float* const> outputs) {
    // Members, not thread_locals: the pool's threads read them.
    std::vector<Quantized>& quantized = quantized_;
    std::vector<size_t>& quantized_of = quantized_of_;
    quantized.clear();
    quantized_of.assign(weights.size(), 0);
    size_t total = 0;
    for (size_t j = 0; j < weights.size(); ++j) {
      const kernels::WeightMatrix& w = cpu_matrix(*weights[j]);
      const float* input = inputs.empty() ? x : inputs[j];
      size_t q = 0;
      while (q < quantized.size() && (quantized[q].input != input || quantized[q].format != w.kernel.act_format)) ++q;
      if (q == quantized.size()) {
        const size_t stride = kernels::act_row_bytes(w.kernel.act_format, weights[j]->row_length());
        quantized.push_back({input, w.kernel.act_format, weights[j]->row_length(), total, stride});
        total += stride * static_cast<size_t>(m);
      }
      quantized_of[j] = q;
    }
    if (scratch_.act.size() < total) scratch_.act.resize(total);
    auto quantize = [&](int64_t begin, int64_t end) {
      for (const Quantized& q : quantized) {
        for (int64_t r = begin; r < end; ++r) {
          kernels::quantize_act_row(q.format, q.input + r * q.k, scratch_.act.data() + q.offset + r * q.stride, q.k);
        }
      }
    };
    if (m >= 8) pool_.parallel_for(m, quantize);
    else quantize(0, m);

    // Split the rows of all matrices together across threads, in units of kRowUnit rows.
    int64_t total_units = 0;
    for (const Matrix* w : weights) total_units += kernels::row_units(cpu_matrix(*w));
    pool_.parallel_for(total_units, [&](int64_t begin, int64_t end) {
      int64_t first = 0;
      for (size_t j = 0; j < weights.size(); ++j) {
        const kernels::WeightMatrix& w = cpu_matrix(*weights[j]);
        const int64_t last = first + kernels::row_units(w);
        const int64_t lo = std::max(begin, first), hi = std::min(end, last);
        if (lo < hi) {
          const Quantized& q = quantized[quantized_of[j]];
          kernels::matmul_units(w, scratch_.act.data() + q.offset, q.stride, m, outputs[j], lo - first, hi - first);
        }
        first = last;
      }
    });
  }

  static void grow_floats(std::vector<float>& buffer, int64_t size) {
    if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(static_cast<size_t>(size));
  }

  // project_inputs': each distinct (input, activation format) and where its quantized rows are.
  struct Quantized {
    const float* input;
    kernels::ActFormat format;
    int64_t k;
    size_t offset, stride;
  };
  std::vector<Quantized> quantized_;
  std::vector<size_t> quantized_of_;

  // experts_ffn's buffers, reused between calls.
  struct ExpertsScratch {
    std::vector<float> logits, weights, slots, input, gate, up, output;
    std::vector<int32_t> chosen, order;
    std::vector<int64_t> rows;
    std::vector<const Matrix*> matrices;
    std::vector<const float*> inputs;
    std::vector<float*> outputs;
  };

  kernels::ThreadPool pool_;
  kernels::MatmulScratch scratch_;
  ExpertsScratch experts_;
  std::vector<int64_t> lora_first_task_;  // add_lora's task offsets, reused between calls
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int num_threads) { return std::make_unique<CpuBackend>(num_threads); }

}  // namespace tern::backend
