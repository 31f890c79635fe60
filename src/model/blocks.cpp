#include "model/blocks.h"

#include "model/model.h"

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

backend::TokenRows token_rows(const Batch& batch) {
  return {.positions = batch.positions, .seq_slots = batch.seq_slots, .block_tables = batch.block_tables};
}

backend::AttentionShape attention_shape(const ModelConfig& c, int64_t window) {
  return {.num_heads = c.num_heads, .num_kv_heads = c.num_kv_heads, .head_dim = c.head_dim, .value_dim = c.value_dim,
          .scale = c.attention_scale, .window = window};
}

backend::EmbeddingTable embedding_table(const ModelWeights& weights) {
  return {.type = weights.token_embedding->type,
          .file_bytes = weights.token_embedding->data,
          .tied_output = weights.output_is_embedding ? &weights.output : nullptr};
}

void find_lora_runs(const Batch& batch, Workspace& ws) {
  ws.lora_runs.clear();
  for (int64_t i = 0; i < batch.size(); ++i) {
    const LoraAdapter* adapter = batch.adapters[static_cast<size_t>(i)];
    if (adapter == nullptr) continue;
    if (!ws.lora_runs.empty() && ws.lora_runs.back().adapter == adapter &&
        ws.lora_runs.back().first_row + ws.lora_runs.back().num_rows == i) {
      ++ws.lora_runs.back().num_rows;
    } else {
      ws.lora_runs.push_back({adapter, i, 1});
    }
  }
}

void add_lora(backend::Backend& be, Workspace& ws, int64_t layer, std::initializer_list<std::pair<LoraTarget, float*>> targets,
              const float* x, int64_t x_width) {
  if (ws.lora_runs.empty()) return;
  ws.lora_updates.clear();
  for (const auto& run : ws.lora_runs) {
    for (const auto& [target, out] : targets) {
      const backend::LoraMatrix& m = run.adapter->matrix(layer, target);
      if (m.rank > 0) ws.lora_updates.push_back({.lora = &m, .first_row = run.first_row, .num_rows = run.num_rows, .out = out});
    }
  }
  if (!ws.lora_updates.empty()) be.add_lora(ws.lora_updates, x, x_width);
}

const float* next_attn_norm(const ModelWeights& weights, int64_t layer) {
  const auto next = static_cast<size_t>(layer + 1);
  return next < weights.layers.size() ? weights.layers[next].attn_norm.data() : nullptr;
}

void compute_logits(backend::Backend& be, const ModelConfig& config, const ModelWeights& weights, const Batch& batch,
                    const float* hidden, std::vector<float>& rows, std::vector<float>& logits) {
  const int64_t n = config.embedding_length;
  const int64_t num_rows = batch.num_logit_rows();
  grow(rows, num_rows * n);
  int64_t r = 0;
  for (int64_t i = 0; i < batch.size(); ++i) {
    if (batch.wants_logits[i]) be.rms_norm(hidden + i * n, weights.output_norm.data(), rows.data() + (r++) * n, 1, n, config.norm_eps);
  }
  logits.resize(static_cast<size_t>(num_rows * config.vocab_size));
  if (num_rows > 0) be.matmul(weights.output, rows.data(), num_rows, logits.data());
}

}  // namespace tern::model
