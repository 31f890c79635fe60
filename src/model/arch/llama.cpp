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

void forward_llama(const ModelConfig& c, const ModelWeights& w, const Batch& batch, KvCache& cache,
                   kernels::ThreadPool& pool, Workspace& ws, std::vector<float>& logits) {
  const int64_t m = batch.size(), n = c.embedding_length;
  ws.prepare(c, m);
  rope_tables(batch, c.rotary_dims, c.rope_base, ws.rope_cos, ws.rope_sin);

  float* x = ws.hidden.data();
  embed_tokens(w, batch, n, c.embedding_scale, x, pool);
  for (int64_t il = 0; il < c.num_layers; ++il) {
    const LayerWeights& layer = w.layers[il];
    rms_norm_rows(pool, x, layer.attn_norm, ws.normed.data(), m, n, c.norm_eps);
    const kernels::WeightMatrix* qkv[] = {&layer.wq, &layer.wk, &layer.wv};
    float* qkv_out[] = {ws.q.data(), ws.k.data(), ws.v.data()};
    project(pool, qkv, ws.normed.data(), m, qkv_out, ws.matmul);
    add_bias(ws.q.data(), layer.bq, m);
    add_bias(ws.k.data(), layer.bk, m);
    add_bias(ws.v.data(), layer.bv, m);
    apply_rope(pool, ws.q.data(), m, c.num_heads, c.head_dim, c.rotary_dims, c.rope_style, ws.rope_cos, ws.rope_sin);
    apply_rope(pool, ws.k.data(), m, c.num_kv_heads, c.head_dim, c.rotary_dims, c.rope_style, ws.rope_cos, ws.rope_sin);
    store_kv(batch, cache, il, ws.k.data(), ws.v.data());
    paged_attention(pool, c, batch, cache, il, ws.q.data(), 0, ws.attention.data());
    kernels::matmul(pool, layer.wo, ws.attention.data(), m, ws.projected.data(), ws.matmul);
    add_residual(pool, x, ws.projected.data(), m * n);

    rms_norm_rows(pool, x, layer.ffn_norm, ws.normed.data(), m, n, c.norm_eps);
    const kernels::WeightMatrix* gate_up[] = {&layer.w_gate, &layer.w_up};
    float* gate_up_out[] = {ws.gate.data(), ws.up.data()};
    project(pool, gate_up, ws.normed.data(), m, gate_up_out, ws.matmul);
    gated_activation(pool, Gating::SILU, ws.gate.data(), ws.up.data(), ws.activated.data(), m * c.ffn_length);
    kernels::matmul(pool, layer.w_down, ws.activated.data(), m, ws.projected.data(), ws.matmul);
    add_residual(pool, x, ws.projected.data(), m * n);
  }
  compute_logits(pool, c, w, batch, x, ws.logit_rows, ws.matmul, logits);
}

}  // namespace tern::model
