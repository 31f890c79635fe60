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

#include "kernels/cpu/ops.h"
#include "model/blocks.h"
#include "model/model.h"

namespace tern::model {

void forward_gemma3(const ModelConfig& c, const ModelWeights& w, const Batch& batch, KvCache& cache,
                    kernels::ThreadPool& pool, Workspace& ws, std::vector<float>& logits) {
  const int64_t m = batch.size(), n = c.embedding_length;
  ws.prepare(c, m);
  std::vector<double> global_cos, global_sin;
  rope_tables(batch, c.rotary_dims, c.rope_base, global_cos, global_sin);
  rope_tables(batch, c.rotary_dims, c.rope_base_sliding, ws.rope_cos, ws.rope_sin);

  float* x = ws.hidden.data();
  embed_tokens(w, batch, n, c.embedding_scale, x, pool);
  for (int64_t il = 0; il < c.num_layers; ++il) {
    const LayerWeights& layer = w.layers[il];
    const bool is_local = c.layer_is_sliding[il];
    rms_norm_rows(pool, x, layer.attn_norm, ws.normed.data(), m, n, c.norm_eps);
    const kernels::WeightMatrix* qkv[] = {&layer.wq, &layer.wk, &layer.wv};
    float* qkv_out[] = {ws.q.data(), ws.k.data(), ws.v.data()};
    project(pool, qkv, ws.normed.data(), m, qkv_out, ws.matmul);
    rms_norm_rows(pool, ws.q.data(), layer.q_norm, ws.q.data(), m * c.num_heads, c.head_dim, c.norm_eps);
    rms_norm_rows(pool, ws.k.data(), layer.k_norm, ws.k.data(), m * c.num_kv_heads, c.head_dim, c.norm_eps);
    const auto& cos = is_local ? ws.rope_cos : global_cos;
    const auto& sin = is_local ? ws.rope_sin : global_sin;
    apply_rope(pool, ws.q.data(), m, c.num_heads, c.head_dim, c.rotary_dims, c.rope_style, cos, sin);
    apply_rope(pool, ws.k.data(), m, c.num_kv_heads, c.head_dim, c.rotary_dims, c.rope_style, cos, sin);
    store_kv(batch, cache, il, ws.k.data(), ws.v.data());
    paged_attention(pool, c, batch, cache, il, ws.q.data(), is_local ? c.sliding_window : 0, ws.attention.data());
    kernels::matmul(pool, layer.wo, ws.attention.data(), m, ws.projected.data(), ws.matmul);
    rms_norm_rows(pool, ws.projected.data(), layer.post_attn_norm, ws.projected.data(), m, n, c.norm_eps);
    add_residual(pool, x, ws.projected.data(), m * n);

    rms_norm_rows(pool, x, layer.ffn_norm, ws.normed.data(), m, n, c.norm_eps);
    const kernels::WeightMatrix* gate_up[] = {&layer.w_gate, &layer.w_up};
    float* gate_up_out[] = {ws.gate.data(), ws.up.data()};
    project(pool, gate_up, ws.normed.data(), m, gate_up_out, ws.matmul);
    gated_activation(pool, Gating::GELU, ws.gate.data(), ws.up.data(), ws.activated.data(), m * c.ffn_length);
    kernels::matmul(pool, layer.w_down, ws.activated.data(), m, ws.projected.data(), ws.matmul);
    rms_norm_rows(pool, ws.projected.data(), layer.post_ffn_norm, ws.projected.data(), m, n, c.norm_eps);
    add_residual(pool, x, ws.projected.data(), m * n);
  }
  compute_logits(pool, c, w, batch, x, ws.logit_rows, ws.matmul, logits);
}

}  // namespace tern::model
