// Llama family forward pass: SmolLM2, Llama 2/3, Mistral; Qwen 2 is the same graph with biases on
// Q, K and V and NeoX-style RoPE (both carried by the config and weights).
//
//   x = embed(tokens)
//   per layer:  h = rmsnorm(x) * attn_norm
//               q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)      rope(q), rope(k); k, v -> cache
//               x = x + attention(q, cache) Wo
//               h = rmsnorm(x) * ffn_norm
//               x = x + (silu(h Wgate) * (h Wup)) Wdown
//   logits = (rmsnorm(x) * output_norm) Woutput                   only for rows that sample

#include "model/blocks.h"
#include "model/model.h"

namespace tern::model {

void forward_llama(const ModelConfig& c, const ModelWeights& w, const Batch& batch, backend::KvCache& cache,
                   backend::Backend& be, Workspace& ws, std::vector<float>& logits) {
  const int64_t m = batch.size(), n = c.embedding_length;
  ws.prepare(c, m);
  const backend::TokenRows rows = token_rows(batch);
  be.rope_table(batch.positions, c.rotary_dims, c.rope_base, ws.rope);

  float* x = ws.hidden.data();
  be.embed(embedding_table(w), batch.tokens, n, c.embedding_scale, x);
  find_lora_runs(batch, ws);
  be.rms_norm(x, w.layers[0].attn_norm.data(), ws.normed.data(), m, n, c.norm_eps);
  for (int64_t il = 0; il < c.num_layers; ++il) {
    const LayerWeights& layer = w.layers[il];
    const backend::Matrix* qkv[] = {&layer.wq, &layer.wk, &layer.wv};
    float* qkv_out[] = {ws.q.data(), ws.k.data(), ws.v.data()};
    be.project(qkv, ws.normed.data(), m, qkv_out);
    add_lora(be, ws, il, {{LoraTarget::kQ, ws.q.data()}, {LoraTarget::kK, ws.k.data()}, {LoraTarget::kV, ws.v.data()}},
             ws.normed.data(), n);
    be.add_bias(ws.q.data(), layer.bq, m);
    be.add_bias(ws.k.data(), layer.bk, m);
    be.add_bias(ws.v.data(), layer.bv, m);
    be.norm_rope_qk(ws.q.data(), c.num_heads, ws.k.data(), c.num_kv_heads, m, c.head_dim, nullptr, nullptr, c.norm_eps,
                    c.rope_style, ws.rope);
    be.store_kv(cache, il, rows, ws.k.data(), ws.v.data());
    be.attention(cache, il, rows, attention_shape(c, 0), ws.q.data(), ws.attention.data());
    be.matmul(layer.wo, ws.attention.data(), m, ws.projected.data());
    add_lora(be, ws, il, {{LoraTarget::kO, ws.projected.data()}}, ws.attention.data(), c.num_heads * c.value_dim);
    be.add_residual_norm(x, ws.projected.data(), nullptr, layer.ffn_norm.data(), ws.normed.data(), m, n, c.norm_eps);

    const backend::Matrix* gate_up[] = {&layer.w_gate, &layer.w_up};
    float* gate_up_out[] = {ws.gate.data(), ws.up.data()};
    be.project(gate_up, ws.normed.data(), m, gate_up_out);
    add_lora(be, ws, il, {{LoraTarget::kGate, ws.gate.data()}, {LoraTarget::kUp, ws.up.data()}}, ws.normed.data(), n);
    be.gated_activation(backend::Gating::SILU, ws.gate.data(), ws.up.data(), ws.activated.data(), m * c.ffn_length);
    be.matmul(layer.w_down, ws.activated.data(), m, ws.projected.data());
    add_lora(be, ws, il, {{LoraTarget::kDown, ws.projected.data()}}, ws.activated.data(), c.ffn_length);
    be.add_residual_norm(x, ws.projected.data(), nullptr, next_attn_norm(w, il), ws.normed.data(), m, n, c.norm_eps);
  }
  compute_logits(be, c, w, batch, x, ws.logit_rows, logits);
}

}  // namespace tern::model
