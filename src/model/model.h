#pragma once
// A loaded model: its file (memory-mapped weights), config, tokenizer, and the batched forward pass.

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace tern::model {

/// Activation rows of one forward pass, reused between calls (grown to the largest batch seen).
struct Workspace {
  std::vector<float> hidden, normed, q, k, v, attention, projected, gate, up, activated;
  std::vector<float> logit_rows;
  std::vector<float> experts_out, shared_gate;  // mixtures: the routed experts' sum; Qwen2-MoE's shared gate
  backend::RopeTable rope, rope_global;  // gemma3: local (sliding) and global bases
  struct LoraRun {
    const LoraAdapter* adapter;
    int64_t first_row, num_rows;
  };
  std::vector<LoraRun> lora_runs;  ///< consecutive rows sharing an adapter (base-model rows are in none)
  std::vector<backend::LoraUpdate> lora_updates;

  /// Grows every activation buffer to hold a batch of `num_tokens` rows.
  void prepare(const ModelConfig& config, int64_t num_tokens);
};

class Model {
 public:
  /// Loads the file; its matrices go to `backend`, which must outlive the model and computes its
  /// forward passes.
  static Result<std::unique_ptr<Model>> load(const std::string& path, backend::Backend& backend);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const tok::Tokenizer& tokenizer() const { return *tokenizer_; }
  const gguf::GgufFile& file() const { return file_; }
  /// Token ids that end generation: EOS and the end-of-turn tokens of chat formats.
  const std::vector<tok::TokenId>& end_of_generation_tokens() const { return end_tokens_; }

  backend::Backend& backend() const { return backend_; }
  /// The shape of this model's KV cache with blocks of `block_size` positions.
  backend::KvCacheShape kv_cache_shape(int64_t block_size) const;
  /// The longest sequence the caller will run (an engine's max_model_len), which LongRoPE models (Phi-3
  /// 128k) need before their first forward pass: past the original context they use the long
  /// frequency factors, as llama.cpp does for its n_ctx. Other models ignore it.
  void set_max_sequence_length(int64_t tokens);
  /// A KV cache of `num_blocks` blocks, through the backend.
  std::unique_ptr<backend::KvCache> make_kv_cache(int64_t num_blocks, int64_t block_size) const;

  /// Runs the batch: writes its K/V into `cache` and returns logits (num_logit_rows x vocab_size,
  /// row-major) in `logits`. Errors for bad batches (token out of range, position past the block
  /// table) leave the cache unchanged.
  Result<void> forward(const Batch& batch, backend::KvCache& cache, std::vector<float>& logits);

 private:
  Model(gguf::GgufFile file, backend::Backend& backend) : file_(std::move(file)), backend_(backend) {}
  Result<void> check_batch(const Batch& batch, const backend::KvCache& cache) const;

  gguf::GgufFile file_;
  backend::Backend& backend_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<tok::Tokenizer> tokenizer_;
  std::vector<tok::TokenId> end_tokens_;
  Workspace workspace_;
};

// One forward pass per architecture family (model/arch/*.cpp), over the blocks in model/blocks.h.
void forward_llama(const ModelConfig& config, const ModelWeights& weights, const Batch& batch, backend::KvCache& cache,
                   backend::Backend& be, Workspace& ws, std::vector<float>& logits);
void forward_gemma(const ModelConfig& config, const ModelWeights& weights, const Batch& batch, backend::KvCache& cache,
                    backend::Backend& be, Workspace& ws, std::vector<float>& logits);

/// Whether tern can run the file, without loading it: its architecture, metadata, tokenizer and
/// tensors checked as Model::load checks them (an error says what is missing).
Result<void> check_runnable(const gguf::GgufFile& file);

/// The chat template's Jinja source: `template_file` if given, else the file's own
/// (tokenizer.chat_template); an error if neither exists.
Result<std::string> chat_template_source(const gguf::GgufFile& file, const std::string& template_file);
Result<std::string> chat_template_source(const Model& model, const std::string& template_file);

}  // namespace tern::model
