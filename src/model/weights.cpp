#include "model/weights.h"

#include "tensor/dequantize.h"
#include "util/mapped_file.h"

namespace tern::model {
namespace {

class TensorFinder {
 public:
  TensorFinder(const gguf::GgufFile& file, backend::Backend& backend) : file_(file), backend_(backend) {}

  Result<const gguf::TensorInfo*> find(const std::string& name, std::vector<uint64_t> shape, bool required = true) const {
    const gguf::TensorInfo* tensor = file_.find_tensor(name);
    if (tensor == nullptr) {
      if (!required) return static_cast<const gguf::TensorInfo*>(nullptr);
      return fail("{}: missing tensor '{}'", file_.name(), name);
    }
    // Trailing dimensions of 1 are equivalent to absent ones.
    std::vector<uint64_t> actual = tensor->shape;
    while (actual.size() > shape.size() && actual.back() == 1) actual.pop_back();
    if (actual != shape) {
      return fail("{}: tensor '{}' has shape {} but the config implies {}", file_.name(), name, describe(tensor->shape),
                  describe(shape));
    }
    if (!dtype_info(tensor->type).can_dequantize) {
      return fail("{}: tensor '{}' has type {}, which tern cannot compute with yet", file_.name(), name,
                  dtype_info(tensor->type).name);
    }
    return tensor;
  }

  // The backend's copy: rearranged for its kernels where that is faster (the file's pages are released
  // as they are copied), else the file's bytes in place.
  Result<backend::Matrix> matrix(const std::string& name, int64_t k, int64_t n) const {
    auto tensor = find(name, {static_cast<uint64_t>(k), static_cast<uint64_t>(n)});
    if (!tensor) return std::unexpected(tensor.error());
    auto w = backend_.load_matrix((*tensor)->type, k, n, (*tensor)->data.data(), file_.is_mapped());
    if (!w) return fail("{}: tensor '{}' ({}): {}", file_.name(), name, dtype_info((*tensor)->type).name, w.error().message);
    return w;
  }

  // Small vectors (norms, biases) are decoded to floats once at load.
  Result<std::vector<float>> vector(const std::string& name, int64_t n, bool required = true) const {
    auto tensor = find(name, {static_cast<uint64_t>(n)}, required);
    if (!tensor) return std::unexpected(tensor.error());
    if (*tensor == nullptr) return std::vector<float>();
    std::vector<float> values(static_cast<size_t>(n));
    auto ok = dequantize((*tensor)->type, (*tensor)->data, values);
    if (!ok) return with_context(name, ok.error());
    return values;
  }

 private:
  static std::string describe(const std::vector<uint64_t>& shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", shape[i]);
    return out + "]";
  }
  const gguf::GgufFile& file_;
  backend::Backend& backend_;
};

}  // namespace

Result<ModelWeights> load_weights(const gguf::GgufFile& file, const ModelConfig& c, backend::Backend& backend) {
  TensorFinder find(file, backend);
  ModelWeights w;
  auto embedding = find.find("token_embd.weight", {static_cast<uint64_t>(c.embedding_length), static_cast<uint64_t>(c.vocab_size)});
  if (!embedding) return std::unexpected(embedding.error());
  w.token_embedding = *embedding;

#define TERN_TRY(target, expr)                        \
  do {                                                \
    auto result_ = (expr);                            \
    if (!result_) return std::unexpected(result_.error()); \
    target = std::move(*result_);                     \
  } while (0)

  const bool is_gemma = c.arch == Arch::GEMMA3;
  const bool has_bias = c.arch == Arch::QWEN2;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("blk.{}.", i);
    LayerWeights layer;
    TERN_TRY(layer.attn_norm, find.vector(p + "attn_norm.weight", c.embedding_length));
    TERN_TRY(layer.wq, find.matrix(p + "attn_q.weight", c.embedding_length, c.q_width()));
    TERN_TRY(layer.wk, find.matrix(p + "attn_k.weight", c.embedding_length, c.kv_width()));
    TERN_TRY(layer.wv, find.matrix(p + "attn_v.weight", c.embedding_length, c.v_width()));
    TERN_TRY(layer.wo, find.matrix(p + "attn_output.weight", c.num_heads * c.value_dim, c.embedding_length));
    TERN_TRY(layer.bq, find.vector(p + "attn_q.bias", c.q_width(), has_bias));
    TERN_TRY(layer.bk, find.vector(p + "attn_k.bias", c.kv_width(), has_bias));
    TERN_TRY(layer.bv, find.vector(p + "attn_v.bias", c.v_width(), has_bias));
    if (is_gemma) {
      TERN_TRY(layer.q_norm, find.vector(p + "attn_q_norm.weight", c.head_dim));
      TERN_TRY(layer.k_norm, find.vector(p + "attn_k_norm.weight", c.head_dim));
      TERN_TRY(layer.post_attn_norm, find.vector(p + "post_attention_norm.weight", c.embedding_length));
      TERN_TRY(layer.post_ffn_norm, find.vector(p + "post_ffw_norm.weight", c.embedding_length));
    }
    TERN_TRY(layer.ffn_norm, find.vector(p + "ffn_norm.weight", c.embedding_length));
    TERN_TRY(layer.w_gate, find.matrix(p + "ffn_gate.weight", c.embedding_length, c.ffn_length));
    TERN_TRY(layer.w_up, find.matrix(p + "ffn_up.weight", c.embedding_length, c.ffn_length));
    TERN_TRY(layer.w_down, find.matrix(p + "ffn_down.weight", c.ffn_length, c.embedding_length));
    w.layers.push_back(std::move(layer));
  }
  TERN_TRY(w.output_norm, find.vector("output_norm.weight", c.embedding_length));
  if (file.find_tensor("output.weight") != nullptr) {
    TERN_TRY(w.output, find.matrix("output.weight", c.embedding_length, c.vocab_size));
  } else {
    // Tied: one copy serves both; token rows are then looked up through the matrix (embed_tokens).
    TERN_TRY(w.output, find.matrix("token_embd.weight", c.embedding_length, c.vocab_size));
    w.output_is_embedding = true;
  }
#undef TERN_TRY
  return w;
}

}  // namespace tern::model
