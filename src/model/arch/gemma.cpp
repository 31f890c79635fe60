// The Gemma 2 and Gemma 3 forward pass. Differences from Llama: embeddings scaled by sqrt(n_embd);
// norms after the attention and feed-forward outputs as well as before; GELU gating; local
// (sliding-window) layers between global ones: every other layer in Gemma 2, five of six in Gemma 3
// (whose local layers use RoPE base 10k). Gemma 3 RMS-norms each head of q and k; Gemma 2 instead
// soft-caps the attention scores and the final logits. The GGUF converter has already folded Gemma's
// (1 + weight) norm convention into the stored weights.
//
//   x = embed(tokens) * sqrt(n_embd)
//   per layer:  h = rmsnorm(x) * attn_norm
//               q, k, v = h Wq, h Wk, h Wv
//               (Gemma 3) q, k = rmsnorm_per_head(q) * q_norm, rmsnorm_per_head(k) * k_norm;  rope(q), rope(k)
//               a = attention(q, cache; window if local; scores soft-capped in Gemma 2)
//               x = x + rmsnorm(a Wo) * post_attention_norm
//               h = rmsnorm(x) * ffn_norm
//               x = x + rmsnorm((gelu(h Wgate) * (h Wup)) Wdown) * post_ffw_norm
//   logits = (rmsnorm(x) * output_norm) Wembedding                  (Gemma 2: soft-capped)

#include "model/blocks.h"
#include "model/model.h"

namespace tern::model {

void forward_gemma(const ModelConfig& c, const ModelWeights& w, const Batch& batch, backend::KvCache& cache,
                   backend::Backend& be, Workspace& ws, std::vector<float>& logits) {
  const int64_t m = batch.size(), n = c.embedding_length;
  const backend::TokenRows rows = token_rows(batch);
  be.rope_table(batch.positions, rope_spec(c, w), ws.rope_global);
  be.rope_table(batch.positions, {.rotary_dims = c.rotary_dims, .base = c.rope_base_sliding, .freq_scale = c.rope_freq_scale_sliding},
                ws.rope);

  float* x = embed_batch(be, c, w, batch, ws);
  for (int64_t il = 0; il < c.num_layers; ++il) {
    const LayerWeights& layer = w.layers[il];
    const bool is_local = c.layer_is_sliding[il];
    attention_inputs(be, c, layer, il, batch, cache, is_local ? ws.rope : ws.rope_global, ws);
    be.attention(cache, il, rows, attention_shape(c, is_local ? c.sliding_window : 0), ws.q.data(), ws.attention.data());
    attention_output(be, c, layer, il, m, ws);
    be.add_residual_norm(x, ws.projected.data(), layer.post_attn_norm.data(), layer.ffn_norm.data(), ws.normed.data(), m, n,
                         c.norm_eps);

    feed_forward(be, c, layer, il, m, ws);
    be.add_residual_norm(x, ws.projected.data(), layer.post_ffn_norm.data(), next_attn_norm(w, il), ws.normed.data(), m, n,
                         c.norm_eps);
  }
  compute_logits(be, c, w, batch, x, ws.logit_rows, logits);
}

}  // namespace tern::model
