#include "model/blocks.h"

#include "model/model.h"

#include <algorithm>

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
  const int64_t widest_ffn = std::max({c.ffn_length, c.shared_expert_ffn_length});
  for (auto* buffer : {&gate, &up, &activated}) grow(*buffer, m * widest_ffn);
  if (c.is_moe()) {
    grow(experts_out, m * n);
    grow(shared_gate, m);
  }
}

float* embed_batch(backend::Backend& be, const ModelConfig& c, const ModelWeights& w, const Batch& batch, Workspace& ws) {
  const int64_t m = batch.size(), n = c.embedding_length;
  ws.prepare(c, m);
  float* x = ws.hidden.data();
  be.embed(embedding_table(w), batch.tokens, n, c.embedding_scale, x);
  find_lora_runs(batch, ws);
  be.rms_norm(x, w.layers[0].attn_norm.data(), ws.normed.data(), m, n, c.norm_eps);
  return x;
}

void attention_output(backend::Backend& be, const ModelConfig& c, const LayerWeights& layer, int64_t il, int64_t m, Workspace& ws) {
  be.matmul(layer.wo, ws.attention.data(), m, ws.projected.data());
  add_lora(be, ws, il, {{LoraTarget::kO, ws.projected.data()}}, ws.attention.data(), c.num_heads * c.value_dim);
}

backend::RopeSpec rope_spec(const ModelConfig& c, const ModelWeights& w) {
  backend::RopeSpec spec{.rotary_dims = c.rotary_dims, .base = c.rope_base, .freq_scale = c.rope_freq_scale,
                         .freq_factors = w.rope_freqs, .attn_factor = c.rope_attn_factor};
  if (c.yarn_original_context > 0) {
    // YaRN as llama.cpp sets it up (llama_context's cparams and ggml_rope_yarn_corr_dims, beta_fast 32
    // and beta_slow 1, in float): the magnitude factor 0.1 ln(s) + 1 that llama.cpp folds into
    // attn_factor is cancelled there and applied again inside the rope, so attn_factor keeps only the
    // file's rope.scaling.attn_factor (up to float rounding, reproduced here).
    const float factor = 1.0f / c.rope_freq_scale;
    const float mscale = factor <= 1.0f ? 1.0f : 0.1f * std::log(factor) + 1.0f;
    spec.attn_factor = mscale * (1.0f / (1.0f + 0.1f * std::log(factor))) * c.rope_attn_factor;
    spec.ext_factor = 1.0f;
    const auto corr_dim = [&](float rotations) {
      return static_cast<float>(c.rotary_dims) *
             std::log(static_cast<float>(c.yarn_original_context) / (rotations * 2.0f * static_cast<float>(M_PI))) /
             (2.0f * std::log(c.rope_base));
    };
    spec.yarn_low = std::max(0.0f, std::floor(corr_dim(32.0f)));
    spec.yarn_high = std::min(static_cast<float>(c.rotary_dims - 1), std::ceil(corr_dim(1.0f)));
  }
  return spec;
}

void attention_inputs(backend::Backend& be, const ModelConfig& c, const LayerWeights& layer, int64_t il, const Batch& batch,
                      backend::KvCache& cache, const backend::RopeTable& rope, Workspace& ws) {
  const int64_t m = batch.size(), n = c.embedding_length;
  const backend::Matrix* qkv[] = {&layer.wq, &layer.wk, &layer.wv};
  float* qkv_out[] = {ws.q.data(), ws.k.data(), ws.v.data()};
  be.project(qkv, ws.normed.data(), m, qkv_out);
  add_lora(be, ws, il, {{LoraTarget::kQ, ws.q.data()}, {LoraTarget::kK, ws.k.data()}, {LoraTarget::kV, ws.v.data()}},
           ws.normed.data(), n);
  be.add_bias(ws.q.data(), layer.bq, m);
  be.add_bias(ws.k.data(), layer.bk, m);
  be.add_bias(ws.v.data(), layer.bv, m);
  const bool per_head = c.qk_norm == QkNorm::PER_HEAD;
  if (c.qk_norm == QkNorm::WHOLE) {  // OLMoE: one RMSNorm over all heads of q, and of k
    be.rms_norm(ws.q.data(), layer.q_norm.data(), ws.q.data(), m, c.q_width(), c.norm_eps);
    be.rms_norm(ws.k.data(), layer.k_norm.data(), ws.k.data(), m, c.kv_width(), c.norm_eps);
  }
  be.norm_rope_qk(ws.q.data(), c.num_heads, ws.k.data(), c.num_kv_heads, m, c.head_dim, per_head ? layer.q_norm.data() : nullptr,
                  per_head ? layer.k_norm.data() : nullptr, c.norm_eps, c.rope_style, rope);
  be.store_kv(cache, il, token_rows(batch), ws.k.data(), ws.v.data());
}

void feed_forward(backend::Backend& be, const ModelConfig& c, const LayerWeights& layer, int64_t il, int64_t m, Workspace& ws) {
  const int64_t n = c.embedding_length;
  if (c.is_moe()) {
    const backend::ExpertsLayer experts{.router = &layer.router, .gate = layer.expert_gate, .up = layer.expert_up,
                                        .down = layer.expert_down, .num_used = c.num_experts_used,
                                        .normalize_weights = c.normalize_expert_weights, .gating = c.gating};
    if (c.shared_expert_ffn_length == 0) {
      be.experts_ffn(experts, ws.normed.data(), m, ws.projected.data());
      return;
    }
    be.experts_ffn(experts, ws.normed.data(), m, ws.experts_out.data());
    // Qwen2-MoE: + sigmoid(x . g) * shared_expert(x), added after the routed experts as llama.cpp does.
    const backend::Matrix* shared[] = {&layer.shared_gate, &layer.shared_up};
    float* shared_out[] = {ws.gate.data(), ws.up.data()};
    be.project(shared, ws.normed.data(), m, shared_out);
    be.gated_activation(c.gating, ws.gate.data(), ws.up.data(), ws.activated.data(), m * c.shared_expert_ffn_length);
    be.matmul(layer.shared_down, ws.activated.data(), m, ws.projected.data());
    be.matmul(layer.shared_gate_input, ws.normed.data(), m, ws.shared_gate.data());
    be.sigmoid_scale_rows(ws.projected.data(), ws.shared_gate.data(), m, n);
    be.add_residual_norm(ws.projected.data(), ws.experts_out.data(), nullptr, nullptr, nullptr, m, n, c.norm_eps);
    return;
  }
  const backend::Matrix* gate_up[] = {&layer.w_gate, &layer.w_up};
  float* gate_up_out[] = {ws.gate.data(), ws.up.data()};
  be.project(gate_up, ws.normed.data(), m, gate_up_out);
  add_lora(be, ws, il, {{LoraTarget::kGate, ws.gate.data()}, {LoraTarget::kUp, ws.up.data()}}, ws.normed.data(), n);
  be.gated_activation(c.gating, ws.gate.data(), ws.up.data(), ws.activated.data(), m * c.ffn_length);
  be.matmul(layer.w_down, ws.activated.data(), m, ws.projected.data());
  add_lora(be, ws, il, {{LoraTarget::kDown, ws.projected.data()}}, ws.activated.data(), c.ffn_length);
}

backend::TokenRows token_rows(const Batch& batch) {
  return {.positions = batch.positions, .seq_slots = batch.seq_slots, .block_tables = batch.block_tables};
}

backend::AttentionShape attention_shape(const ModelConfig& c, int64_t window) {
  return {.num_heads = c.num_heads, .num_kv_heads = c.num_kv_heads, .head_dim = c.head_dim, .value_dim = c.value_dim,
          .scale = c.attention_scale, .window = window, .softcap = c.attn_softcap};
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
  if (num_rows > 0 && config.final_softcap > 0.0f) be.soft_cap(logits.data(), num_rows * config.vocab_size, config.final_softcap);
}

}  // namespace tern::model
