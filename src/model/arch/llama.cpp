// The Llama-style forward pass: Llama 2/3.x, SmolLM2, Mistral, Mixtral; Qwen 2 / 3 and their mixtures;
// OLMoE; Phi-3. What differs between them is carried by the config and the weights (model/config.cpp
// says which architecture has what): biases on q, k, v (Qwen 2); RMSNorm of q and k, per head (Qwen 3)
// or whole (OLMoE); NORM or NeoX RoPE, Llama 3's frequency factors; fused q/k/v and gate/up matrices
// (Phi-3, split into views at load); a dense or mixture-of-experts feed-forward.
//
//   x = embed(tokens)
//   per layer:  h = rmsnorm(x) * attn_norm
//               q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)     (q, k normed)  rope(q), rope(k); k, v -> cache
//               x = x + attention(q, cache) Wo
//               h = rmsnorm(x) * ffn_norm
//               x = x + (silu(h Wgate) * (h Wup)) Wdown          or the sum of the router's top experts' FFNs
//   logits = (rmsnorm(x) * output_norm) Woutput                   only for rows that sample

#include "model/blocks.h"
#include "model/model.h"

namespace tern::model {

void forward_llama(const ModelConfig& c, const ModelWeights& w, const Batch& batch, backend::KvCache& cache,
                   backend::Backend& be, Workspace& ws, std::vector<float>& logits) {
  const int64_t m = batch.size(), n = c.embedding_length;
  const backend::TokenRows rows = token_rows(batch);
  be.rope_table(batch.positions, rope_spec(c, w), ws.rope);

  float* x = embed_batch(be, c, w, batch, ws);
  for (int64_t il = 0; il < c.num_layers; ++il) {
    const LayerWeights& layer = w.layers[il];
    attention_inputs(be, c, layer, il, batch, cache, ws.rope, ws);
    be.attention(cache, il, rows, attention_shape(c, 0), ws.q.data(), ws.attention.data());
    attention_output(be, c, layer, il, m, ws);
    be.add_residual_norm(x, ws.projected.data(), nullptr, layer.ffn_norm.data(), ws.normed.data(), m, n, c.norm_eps);

    feed_forward(be, c, layer, il, m, ws);
    be.add_residual_norm(x, ws.projected.data(), nullptr, next_attn_norm(w, il), ws.normed.data(), m, n, c.norm_eps);
  }
  compute_logits(be, c, w, batch, x, ws.logit_rows, logits);
}

}  // namespace tern::model
