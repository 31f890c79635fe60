#include "model/blocks.h"

#include "model/model.h"

#include <cmath>
#include <numeric>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vector_ops.h"
#include "tensor/dequantize.h"
#include "tensor/half.h"

namespace tern::model {

void grow(std::vector<float>& buffer, int64_t size) {
  if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(static_cast<size_t>(size));
}

void Workspace::prepare(const ModelConfig& c, int64_t m) {
  const int64_t n = c.embedding_length;
  for (auto* buffer : {&hidden, &normed, &projected}) grow(*buffer, m * n);
  grow(q, m * c.q_width());
  grow(k, m * c.kv_width());
  grow(v, m * c.v_width());
  grow(attention, m * c.num_heads * c.value_dim);
  for (auto* buffer : {&gate, &up, &activated}) grow(*buffer, m * c.ffn_length);
}

void embed_tokens(const ModelWeights& weights, const Batch& batch, int64_t n_embd, float scale, float* hidden,
                  kernels::ThreadPool& pool) {
  const gguf::TensorInfo& embedding = *weights.token_embedding;
  const DTypeInfo& info = dtype_info(embedding.type);
  const size_t row_bytes = dtype_bytes(info, static_cast<uint64_t>(n_embd));
  pool.parallel_for(batch.size(), [&](int64_t begin, int64_t end) {
    thread_local std::vector<uint8_t> file_row;
    for (int64_t i = begin; i < end; ++i) {
      float* row = hidden + i * n_embd;
      std::span<const uint8_t> bytes = embedding.data.subspan(static_cast<size_t>(batch.tokens[i]) * row_bytes, row_bytes);
      if (weights.output_is_embedding && weights.output.interleaved) {  // the file's pages were released
        file_row.resize(row_bytes);
        kernels::copy_file_row(weights.output, batch.tokens[i], file_row.data());
        bytes = file_row;
      }
      (void)dequantize(embedding.type, bytes, {row, static_cast<size_t>(n_embd)});
      if (scale != 1.0f) {
        for (int64_t j = 0; j < n_embd; ++j) row[j] *= scale;
      }
    }
  });
}

void rms_norm_rows(kernels::ThreadPool& pool, const float* x, const std::vector<float>& weight, float* out, int64_t rows,
                   int64_t n, float eps) {
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) kernels::rms_norm(x + i * n, weight.data(), out + i * n, n, eps);
  };
  if (rows >= 16) pool.parallel_for(rows, body);
  else body(0, rows);
}

void project(kernels::ThreadPool& pool, std::span<const kernels::WeightMatrix* const> weights, const float* x, int64_t m,
             std::span<float* const> outputs, kernels::MatmulScratch& scratch) {
  // One quantized copy of x per activation format in use (usually one).
  const int64_t k = weights[0]->row_length;
  kernels::ActFormat formats[3];
  size_t offsets[3];
  size_t strides[3];
  int num_formats = 0;
  std::vector<int> format_of(weights.size());
  size_t total = 0;
  for (size_t j = 0; j < weights.size(); ++j) {
    const kernels::ActFormat format = weights[j]->kernel.act_format;
    int f = 0;
    while (f < num_formats && formats[f] != format) ++f;
    if (f == num_formats) {
      formats[f] = format;
      strides[f] = kernels::act_row_bytes(format, k);
      offsets[f] = total;
      total += strides[f] * static_cast<size_t>(m);
      ++num_formats;
    }
    format_of[j] = f;
  }
  if (scratch.act.size() < total) scratch.act.resize(total);
  auto quantize = [&](int64_t begin, int64_t end) {
    for (int f = 0; f < num_formats; ++f) {
      for (int64_t i = begin; i < end; ++i) {
        kernels::quantize_act_row(formats[f], x + i * k, scratch.act.data() + offsets[f] + i * strides[f], k);
      }
    }
  };
  if (m >= 8) pool.parallel_for(m, quantize);
  else quantize(0, m);

  // Split the rows of all matrices together across threads, in units of kRowUnit rows.
  int64_t total_units = 0;
  for (const auto* w : weights) total_units += kernels::row_units(*w);
  pool.parallel_for(total_units, [&](int64_t begin, int64_t end) {
    int64_t first = 0;
    for (size_t j = 0; j < weights.size(); ++j) {
      const int64_t last = first + kernels::row_units(*weights[j]);
      const int64_t lo = std::max(begin, first), hi = std::min(end, last);
      if (lo < hi) {
        const int f = format_of[j];
        kernels::matmul_units(*weights[j], scratch.act.data() + offsets[f], strides[f], m, outputs[j], lo - first, hi - first);
      }
      first = last;
    }
  });
}

void parallel_range(kernels::ThreadPool& pool, int64_t n, int64_t min_parallel, const std::function<void(int64_t, int64_t)>& fn) {
  if (n >= min_parallel) pool.parallel_for(n, fn);
  else fn(0, n);
}

void add_residual(kernels::ThreadPool& pool, float* x, const float* y, int64_t n) {
  parallel_range(pool, n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] += y[i];
  });
}

void gated_activation(kernels::ThreadPool& pool, Gating gating, const float* gate, const float* up, float* out, int64_t n) {
  parallel_range(pool, n, 1 << 14, [&](int64_t begin, int64_t end) {
    if (gating == Gating::SILU) kernels::silu_mul(gate + begin, up + begin, out + begin, end - begin);
    else kernels::gelu_mul(gate + begin, up + begin, out + begin, end - begin);
  });
}

void add_bias(float* x, const std::vector<float>& bias, int64_t rows) {
  if (bias.empty()) return;
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < n; ++j) x[i * n + j] += bias[j];
  }
}

void rope_tables(const Batch& batch, int64_t rotary_dims, float base, std::vector<double>& cos, std::vector<double>& sin) {
  // Angles follow llama.cpp's float recurrence (theta *= base^(-2/d) per pair) rather than exact
  // powers: the few-ulp differences in early layers otherwise grow into different greedy tokens.
  const int64_t half = rotary_dims / 2;
  cos.resize(static_cast<size_t>(batch.size() * half));
  sin.resize(cos.size());
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(rotary_dims));
  for (int64_t i = 0; i < batch.size(); ++i) {
    float theta = static_cast<float>(batch.positions[i]);
    for (int64_t d = 0; d < half; ++d) {
      cos[i * half + d] = std::cos(theta);
      sin[i * half + d] = std::sin(theta);
      theta *= theta_scale;
    }
  }
}

void apply_rope(kernels::ThreadPool& pool, float* x, int64_t rows, int64_t num_heads, int64_t head_dim, int64_t rotary_dims,
                kernels::RopeStyle style, const std::vector<double>& cos, const std::vector<double>& sin) {
  const int64_t half = rotary_dims / 2;
  parallel_range(pool, rows, 32, [&](int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const double* c = cos.data() + i * half;
    const double* s = sin.data() + i * half;
    for (int64_t h = 0; h < num_heads; ++h) {
      float* head = x + (i * num_heads + h) * head_dim;
      for (int64_t d = 0; d < half; ++d) {
        const int64_t a = style == kernels::RopeStyle::NORM ? 2 * d : d;
        const int64_t b = style == kernels::RopeStyle::NORM ? 2 * d + 1 : d + half;
        const float x0 = head[a], x1 = head[b];
        const float cos_theta = static_cast<float>(c[d]), sin_theta = static_cast<float>(s[d]);
        head[a] = x0 * cos_theta - x1 * sin_theta;
        head[b] = x0 * sin_theta + x1 * cos_theta;
      }
    }
  }
  });
}

void store_kv(const Batch& batch, KvCache& cache, int64_t layer, const float* k, const float* v) {
  const kernels::VectorOps& ops = kernels::vector_ops();
  const int64_t bs = cache.block_size();
  for (int64_t i = 0; i < batch.size(); ++i) {
    const int32_t pos = batch.positions[i];
    const int32_t block = batch.block_tables[batch.seq_slots[i]][pos / bs];
    const int64_t offset = pos % bs;
    ops.to_f16(cache.key_width(), k + i * cache.key_width(), cache.keys(layer, block) + offset * cache.key_width());
    ops.to_f16(cache.value_width(), v + i * cache.value_width(), cache.values(layer, block) + offset * cache.value_width());
  }
}

void paged_attention(kernels::ThreadPool& pool, const ModelConfig& config, const Batch& batch, KvCache& cache,
                     int64_t layer, const float* q, int64_t window, float* out) {
  const kernels::VectorOps& ops = kernels::vector_ops();
  const int64_t num_heads = config.num_heads;
  const int64_t group = config.num_heads / config.num_kv_heads;
  const int64_t head_dim = config.head_dim, value_dim = config.value_dim;
  const int64_t bs = cache.block_size();
  // The heads that share a KV head go together, so each key and value is converted once for all of
  // them, when that still leaves a few tasks per thread; otherwise one head per task. A head's
  // arithmetic is the same either way, so its result never depends on the batch.
  const int64_t heads_per_task = batch.size() * config.num_kv_heads >= 4 * pool.num_threads() ? group : 1;
  const int64_t tasks_per_row = num_heads / heads_per_task;
  pool.parallel_for(batch.size() * tasks_per_row, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores, rounded_queries;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / tasks_per_row, first_head = (task % tasks_per_row) * heads_per_task;
      const int64_t kv_head = first_head / group;
      const int num_q = static_cast<int>(heads_per_task);
      const int64_t pos = batch.positions[i];
      const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      const int64_t length = pos - first + 1;
      const std::span<const int32_t> table = batch.block_tables[batch.seq_slots[i]];
      // Like llama.cpp (F16 KV cache, no flash attention), the queries are rounded to F16 for q.k and
      // the attention weights are rounded to F16 before weighting V: same inputs, closer results.
      rounded_queries.resize(static_cast<size_t>(num_q * head_dim));
      ops.round_f16(num_q * head_dim, q + (i * num_heads + first_head) * head_dim, rounded_queries.data());
      scores.resize(static_cast<size_t>(num_q * length));
      // Walk the sequence's blocks: each call covers the positions of one block.
      for (int64_t j = first; j <= pos;) {
        const int64_t count = std::min(bs - j % bs, pos - j + 1);
        const uint16_t* keys = cache.keys(layer, table[j / bs]) + (j % bs) * cache.key_width() + kv_head * head_dim;
        ops.dot_rows_f16(rounded_queries.data(), num_q, keys, cache.key_width(), count, head_dim, scores.data() + (j - first),
                         length);
        j += count;
      }
      for (int g = 0; g < num_q; ++g) ops.softmax_f16(length, config.attention_scale, scores.data() + g * length);
      float* result = out + (i * num_heads + first_head) * value_dim;
      std::fill(result, result + num_q * value_dim, 0.0f);
      for (int64_t j = first; j <= pos;) {
        const int64_t count = std::min(bs - j % bs, pos - j + 1);
        const uint16_t* values = cache.values(layer, table[j / bs]) + (j % bs) * cache.value_width() + kv_head * value_dim;
        ops.axpy_rows_f16(scores.data() + (j - first), length, num_q, values, cache.value_width(), count, value_dim, result);
        j += count;
      }
    }
  });
}

void compute_logits(kernels::ThreadPool& pool, const ModelConfig& config, const ModelWeights& weights, const Batch& batch,
                    const float* hidden, std::vector<float>& rows, kernels::MatmulScratch& scratch,
                    std::vector<float>& logits) {
  const int64_t n = config.embedding_length;
  const int64_t num_rows = batch.num_logit_rows();
  grow(rows, num_rows * n);
  int64_t r = 0;
  for (int64_t i = 0; i < batch.size(); ++i) {
    if (batch.wants_logits[i]) kernels::rms_norm(hidden + i * n, weights.output_norm.data(), rows.data() + (r++) * n, n, config.norm_eps);
  }
  logits.resize(static_cast<size_t>(num_rows * config.vocab_size));
  if (num_rows > 0) kernels::matmul(pool, weights.output, rows.data(), num_rows, logits.data(), scratch);
}

}  // namespace tern::model
