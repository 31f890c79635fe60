#include "model/weights.h"

#include <set>

#include "tensor/dequantize.h"
#include "util/mapped_file.h"

namespace tern::model {
namespace {

class TensorFinder {
 public:
  /// `backend` null: a dry run that checks names, shapes and types but loads nothing (tern inspect).
  TensorFinder(const gguf::GgufFile& file, backend::Backend* backend) : file_(file), backend_(backend) {}

  Result<const gguf::TensorInfo*> find(const std::string& name, std::vector<uint64_t> shape, bool required = true) const {
    const gguf::TensorInfo* tensor = file_.find_tensor(name);
    if (tensor == nullptr) {
      if (!required) return static_cast<const gguf::TensorInfo*>(nullptr);
      return fail("{}: missing tensor '{}'", file_.name(), name);
    }
    used_.insert(name);
    // Trailing dimensions of 1 are equivalent to absent ones.
    std::vector<uint64_t> actual = tensor->shape;
    while (actual.size() > 1 && actual.back() == 1) actual.pop_back();
    while (shape.size() > 1 && shape.back() == 1) shape.pop_back();
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
    return rows_of(**tensor, 0, n);
  }

  // Phi-3's fused matrices: one 2-d tensor of `k`-wide rows holding consecutive matrices of `counts`
  // rows ([q; k; v], [gate; up]). Each part is a matrix of its own over its rows of the file.
  Result<std::vector<backend::Matrix>> split_rows(const std::string& name, int64_t k, std::vector<int64_t> counts) const {
    int64_t rows = 0;
    for (int64_t count : counts) rows += count;
    auto tensor = find(name, {static_cast<uint64_t>(k), static_cast<uint64_t>(rows)});
    if (!tensor) return std::unexpected(tensor.error());
    return consecutive_matrices(**tensor, counts);
  }

  // A mixture's experts: a 3-d tensor of `num_experts` matrices of `n` rows of `k`, one matrix each.
  Result<std::vector<backend::Matrix>> experts(const std::string& name, int64_t k, int64_t n, int64_t num_experts) const {
    auto tensor = find(name, {static_cast<uint64_t>(k), static_cast<uint64_t>(n), static_cast<uint64_t>(num_experts)});
    if (!tensor) return std::unexpected(tensor.error());
    return consecutive_matrices(**tensor, std::vector<int64_t>(static_cast<size_t>(num_experts), n));
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

  // Tensors this file holds that no find() asked for.
  std::vector<std::string> unused() const {
    std::vector<std::string> names;
    for (const gguf::TensorInfo& tensor : file_.tensors()) {
      if (!used_.contains(tensor.name)) names.emplace_back(tensor.name);
    }
    return names;
  }

 private:
  Result<std::vector<backend::Matrix>> consecutive_matrices(const gguf::TensorInfo& tensor, const std::vector<int64_t>& counts) const {
    std::vector<backend::Matrix> parts;
    int64_t first = 0;
    for (int64_t count : counts) {
      auto w = rows_of(tensor, first, count);
      if (!w) return std::unexpected(w.error());
      parts.push_back(std::move(*w));
      first += count;
    }
    return parts;
  }

  Result<backend::Matrix> rows_of(const gguf::TensorInfo& tensor, int64_t first_row, int64_t num_rows) const {
    const int64_t k = static_cast<int64_t>(tensor.shape[0]);
    const uint64_t row_bytes = dtype_bytes(dtype_info(tensor.type), static_cast<uint64_t>(k));
    if (backend_ == nullptr) return backend::Matrix(tensor.type, k, num_rows, nullptr);
    auto w = backend_->load_matrix(tensor.type, k, num_rows, tensor.data.data() + static_cast<uint64_t>(first_row) * row_bytes,
                                  file_.is_mapped());
    if (!w) return fail("{}: tensor '{}' ({}): {}", file_.name(), tensor.name, dtype_info(tensor.type).name, w.error().message);
    return w;
  }

  static std::string describe(const std::vector<uint64_t>& shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", shape[i]);
    return out + "]";
  }
  const gguf::GgufFile& file_;
  backend::Backend* backend_;
  mutable std::set<std::string, std::less<>> used_;
};

}  // namespace

namespace {

Result<ModelWeights> find_weights(const gguf::GgufFile& file, const ModelConfig& c, backend::Backend* backend) {
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

  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("blk.{}.", i);
    LayerWeights layer;
    TERN_TRY(layer.attn_norm, find.vector(p + "attn_norm.weight", c.embedding_length));
    if (c.fused_qkv) {
      std::vector<backend::Matrix> qkv;
      TERN_TRY(qkv, find.split_rows(p + "attn_qkv.weight", c.embedding_length, {c.q_width(), c.kv_width(), c.v_width()}));
      layer.wq = std::move(qkv[0]), layer.wk = std::move(qkv[1]), layer.wv = std::move(qkv[2]);
    } else {
      TERN_TRY(layer.wq, find.matrix(p + "attn_q.weight", c.embedding_length, c.q_width()));
      TERN_TRY(layer.wk, find.matrix(p + "attn_k.weight", c.embedding_length, c.kv_width()));
      TERN_TRY(layer.wv, find.matrix(p + "attn_v.weight", c.embedding_length, c.v_width()));
    }
    TERN_TRY(layer.wo, find.matrix(p + "attn_output.weight", c.num_heads * c.value_dim, c.embedding_length));
    TERN_TRY(layer.bq, find.vector(p + "attn_q.bias", c.q_width(), c.qkv_bias));
    TERN_TRY(layer.bk, find.vector(p + "attn_k.bias", c.kv_width(), c.qkv_bias));
    TERN_TRY(layer.bv, find.vector(p + "attn_v.bias", c.v_width(), c.qkv_bias));
    if (c.qk_norm != QkNorm::NONE) {
      const bool whole = c.qk_norm == QkNorm::WHOLE;
      TERN_TRY(layer.q_norm, find.vector(p + "attn_q_norm.weight", whole ? c.q_width() : c.head_dim));
      TERN_TRY(layer.k_norm, find.vector(p + "attn_k_norm.weight", whole ? c.kv_width() : c.head_dim));
    }
    if (c.post_norms) {
      TERN_TRY(layer.post_attn_norm, find.vector(p + "post_attention_norm.weight", c.embedding_length));
      TERN_TRY(layer.post_ffn_norm, find.vector(p + "post_ffw_norm.weight", c.embedding_length));
    }
    TERN_TRY(layer.ffn_norm, find.vector(p + "ffn_norm.weight", c.embedding_length));
    if (c.is_moe()) {
      TERN_TRY(layer.router, find.matrix(p + "ffn_gate_inp.weight", c.embedding_length, c.num_experts));
      TERN_TRY(layer.expert_gate, find.experts(p + "ffn_gate_exps.weight", c.embedding_length, c.expert_ffn_length, c.num_experts));
      TERN_TRY(layer.expert_up, find.experts(p + "ffn_up_exps.weight", c.embedding_length, c.expert_ffn_length, c.num_experts));
      TERN_TRY(layer.expert_down, find.experts(p + "ffn_down_exps.weight", c.expert_ffn_length, c.embedding_length, c.num_experts));
      if (c.shared_expert_ffn_length > 0) {
        TERN_TRY(layer.shared_gate_input, find.matrix(p + "ffn_gate_inp_shexp.weight", c.embedding_length, 1));
        TERN_TRY(layer.shared_gate, find.matrix(p + "ffn_gate_shexp.weight", c.embedding_length, c.shared_expert_ffn_length));
        TERN_TRY(layer.shared_up, find.matrix(p + "ffn_up_shexp.weight", c.embedding_length, c.shared_expert_ffn_length));
        TERN_TRY(layer.shared_down, find.matrix(p + "ffn_down_shexp.weight", c.shared_expert_ffn_length, c.embedding_length));
      }
    } else if (c.fused_qkv) {
      std::vector<backend::Matrix> gate_up;
      TERN_TRY(gate_up, find.split_rows(p + "ffn_up.weight", c.embedding_length, {c.ffn_length, c.ffn_length}));
      layer.w_gate = std::move(gate_up[0]), layer.w_up = std::move(gate_up[1]);
    } else {
      TERN_TRY(layer.w_gate, find.matrix(p + "ffn_gate.weight", c.embedding_length, c.ffn_length));
      TERN_TRY(layer.w_up, find.matrix(p + "ffn_up.weight", c.embedding_length, c.ffn_length));
    }
    if (!c.is_moe()) TERN_TRY(layer.w_down, find.matrix(p + "ffn_down.weight", c.ffn_length, c.embedding_length));
    w.layers.push_back(std::move(layer));
  }
  TERN_TRY(w.output_norm, find.vector("output_norm.weight", c.embedding_length));
  // Llama 3.1 and later: RoPE's frequency factors, one tensor for every layer.
  if (c.arch == Arch::LLAMA) TERN_TRY(w.rope_freqs, find.vector("rope_freqs.weight", c.rotary_dims / 2, /*required=*/false));
  // Phi-3 128k (LongRoPE): short factors up to the original context, long ones past it; both or neither.
  if (c.arch == Arch::PHI3) {
    TERN_TRY(w.rope_factors_long, find.vector("rope_factors_long.weight", c.rotary_dims / 2, /*required=*/false));
    TERN_TRY(w.rope_factors_short, find.vector("rope_factors_short.weight", c.rotary_dims / 2, /*required=*/false));
    if (w.rope_factors_long.empty() != w.rope_factors_short.empty()) {
      return fail("{}: rope_factors_long.weight and rope_factors_short.weight come together (LongRoPE)", file.name());
    }
    w.rope_freqs = w.rope_factors_short;
  }
  if (file.find_tensor("output.weight") != nullptr) {
    TERN_TRY(w.output, find.matrix("output.weight", c.embedding_length, c.vocab_size));
  } else {
    // Tied: one copy serves both; token rows are then looked up through the matrix (embed_tokens).
    TERN_TRY(w.output, find.matrix("token_embd.weight", c.embedding_length, c.vocab_size));
    w.output_is_embedding = true;
  }
  if (const auto unused = find.unused(); !unused.empty()) {
    return fail("{}: tensor '{}' is not one tern's {} uses{} (it would change the computation, so tern refuses the model "
                "rather than answer differently from it)", file.name(), unused.front(), c.arch_name,
                unused.size() > 1 ? fmt::format(", nor are {} more", unused.size() - 1) : std::string());
  }
#undef TERN_TRY
  return w;
}

}  // namespace

Result<ModelWeights> load_weights(const gguf::GgufFile& file, const ModelConfig& config, backend::Backend& backend) {
  return find_weights(file, config, &backend);
}

Result<void> check_weights(const gguf::GgufFile& file, const ModelConfig& config) {
  auto weights = find_weights(file, config, nullptr);
  if (!weights) return std::unexpected(weights.error());
  return {};
}

}  // namespace tern::model
