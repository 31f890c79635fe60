// Gemma 3 forward pass. Differences from Llama: embeddings scaled by sqrt(n_embd); RMSNorm of each
// head of q and k; norms after the attention and feed-forward outputs as well as before; GELU gating;
// five sliding-window (local, RoPE base 10k) layers for each global layer. The GGUF converter has
// already folded Gemma's (1 + weight) norm convention into the stored weights.
//
//   x = embed(tokens) * sqrt(n_embd)
//   per layer:  h = rmsnorm(x) * attn_norm
//               q, k, v = h Wq, h Wk, h Wv
//               q, k = rmsnorm_per_head(q) * q_norm, rmsnorm_per_head(k) * k_norm;  rope(q), rope(k)
//               a = attention(q, cache; window if local)
//               x = x + rmsnorm(a Wo) * post_attention_norm
//               h = rmsnorm(x) * ffn_norm
//               x = x + rmsnorm((gelu(h Wgate) * (h Wup)) Wdown) * post_ffw_norm
//   logits = (rmsnorm(x) * output_norm) Wembedding

#include "model/blocks.h"
#include "model/model.h"

namespace tern::model {

void forward_gemma3(const ModelConfig& c, const ModelWeights& w, const Batch& batch, backend::KvCache& cache,
                    backend::Backend& be, Workspace& ws, std::vector<float>& logits) {
  const int64_t m = batch.size(), n = c.embedding_length;
  ws.prepare(c, m);
  const backend::TokenRows rows = token_rows(batch);
  be.rope_table(batch.positions, c.rotary_dims, c.rope_base, ws.rope_global);
  be.rope_table(batch.positions, c.rotary_dims, c.rope_base_sliding, ws.rope);

  float* x = ws.hidden.data();
  be.embed(embedding_table(w), batch.tokens, n, c.embedding_scale, x);
  find_lora_runs(batch, ws);
  be.rms_norm(x, w.layers[0].attn_norm.data(), ws.normed.data(), m, n, c.norm_eps);
  for (int64_t il = 0; il < c.num_layers; ++il) {
    const LayerWeights& layer = w.layers[il];
    const bool is_local = c.layer_is_sliding[il];
    const backend::Matrix* qkv[] = {&layer.wq, &layer.wk, &layer.wv};
    float* qkv_out[] = {ws.q.data(), ws.k.data(), ws.v.data()};
    be.project(qkv, ws.normed.data(), m, qkv_out);
    add_lora(be, ws, il, {{LoraTarget::kQ, ws.q.data()}, {LoraTarget::kK, ws.k.data()}, {LoraTarget::kV, ws.v.data()}},
             ws.normed.data(), n);
    be.norm_rope_qk(ws.q.data(), c.num_heads, ws.k.data(), c.num_kv_heads, m, c.head_dim, layer.q_norm.data(),
                    layer.k_norm.data(), c.norm_eps, c.rope_style, is_local ? ws.rope : ws.rope_global);
    be.store_kv(cache, il, rows, ws.k.data(), ws.v.data());
    be.attention(cache, il, rows, attention_shape(c, is_local ? c.sliding_window : 0), ws.q.data(), ws.attention.data());
    be.matmul(layer.wo, ws.attention.data(), m, ws.projected.data());
    add_lora(be, ws, il, {{LoraTarget::kO, ws.projected.data()}}, ws.attention.data(), c.num_heads * c.value_dim);
    be.add_residual_norm(x, ws.projected.data(), layer.post_attn_norm.data(), layer.ffn_norm.data(), ws.normed.data(), m, n,
                         c.norm_eps);

    const backend::Matrix* gate_up[] = {&layer.w_gate, &layer.w_up};
    float* gate_up_out[] = {ws.gate.data(), ws.up.data()};
    be.project(gate_up, ws.normed.data(), m, gate_up_out);
    add_lora(be, ws, il, {{LoraTarget::kGate, ws.gate.data()}, {LoraTarget::kUp, ws.up.data()}}, ws.normed.data(), n);
    be.gated_activation(backend::Gating::GELU, ws.gate.data(), ws.up.data(), ws.activated.data(), m * c.ffn_length);
    be.matmul(layer.w_down, ws.activated.data(), m, ws.projected.data());
    add_lora(be, ws, il, {{LoraTarget::kDown, ws.projected.data()}}, ws.activated.data(), c.ffn_length);
    be.add_residual_norm(x, ws.projected.data(), layer.post_ffn_norm.data(), next_attn_norm(w, il), ws.normed.data(), m, n,
                         c.norm_eps);
  }
  compute_logits(be, c, w, batch, x, ws.logit_rows, logits);
}

}  // namespace tern::model
