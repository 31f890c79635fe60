#include "model/model.h"

#include <fstream>
#include <sstream>

#include <algorithm>

namespace tern::model {
namespace {

// The tokenizer's vocabulary is the one the embedding and output matrices are shaped for.
Result<void> check_vocab_size(const ModelConfig& config, const tok::Tokenizer& tokenizer, const std::string& path) {
  if (config.vocab_size == static_cast<int64_t>(tokenizer.vocab().size())) return {};
  return fail("{}: vocabulary of {} tokens but {} in the config", path, tokenizer.vocab().size(), config.vocab_size);
}

}  // namespace

Result<std::unique_ptr<Model>> Model::load(const std::string& path, backend::Backend& backend) {
  auto file = gguf::GgufFile::open(path);
  if (!file) return std::unexpected(file.error());
  std::unique_ptr<Model> model(new Model(std::move(*file), backend));
  auto config = read_config(model->file_);
  if (!config) return std::unexpected(config.error());
  model->config_ = std::move(*config);
  auto tokenizer = tok::Tokenizer::from_gguf(model->file_);
  if (!tokenizer) return std::unexpected(tokenizer.error());
  model->tokenizer_ = std::make_unique<tok::Tokenizer>(std::move(*tokenizer));
  if (auto ok = check_vocab_size(model->config_, *model->tokenizer_, path); !ok) return std::unexpected(ok.error());
  auto weights = load_weights(model->file_, model->config_, backend);
  if (!weights) return std::unexpected(weights.error());
  model->weights_ = std::move(*weights);

  const tok::Vocab& vocab = model->tokenizer_->vocab();
  if (vocab.eos) model->end_tokens_.push_back(*vocab.eos);
  for (const char* text : {"<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "</s>"}) {
    if (auto id = vocab.find(text); id && vocab.types[*id] == tok::TokenType::CONTROL) {
      if (std::find(model->end_tokens_.begin(), model->end_tokens_.end(), *id) == model->end_tokens_.end()) {
        model->end_tokens_.push_back(*id);
      }
    }
  }
  return model;
}

backend::KvCacheShape Model::kv_cache_shape(int64_t block_size) const {
  return {.num_layers = config_.num_layers, .key_width = config_.kv_width(), .value_width = config_.v_width(), .block_size = block_size};
}

void Model::set_max_sequence_length(int64_t tokens) {
  if (weights_.rope_factors_long.empty()) return;
  weights_.rope_freqs = tokens > config_.rope_original_context ? weights_.rope_factors_long : weights_.rope_factors_short;
}

std::unique_ptr<backend::KvCache> Model::make_kv_cache(int64_t num_blocks, int64_t block_size) const {
  return backend_.make_kv_cache(kv_cache_shape(block_size), num_blocks);
}

Result<void> Model::check_batch(const Batch& batch, const backend::KvCache& cache) const {
  const size_t n = batch.tokens.size();
  if (batch.positions.size() != n || batch.seq_slots.size() != n || batch.wants_logits.size() != n || batch.adapters.size() != n) {
    return fail("batch fields have different lengths");
  }
  for (size_t i = 0; i < n; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= config_.vocab_size) {
      return fail("token id {} is outside the vocabulary ({} tokens)", batch.tokens[i], config_.vocab_size);
    }
    const int32_t slot = batch.seq_slots[i];
    if (slot < 0 || static_cast<size_t>(slot) >= batch.block_tables.size()) return fail("sequence slot {} has no block table", slot);
    const int32_t pos = batch.positions[i];
    const auto& table = batch.block_tables[slot];
    if (pos < 0 || pos / cache.block_size() >= static_cast<int64_t>(table.size())) {
      return fail("position {} of sequence {} is past its {} KV blocks", pos, slot, table.size());
    }
    for (int32_t block : table) {
      if (block < 0 || block >= cache.num_blocks()) return fail("block {} is outside the KV cache", block);
    }
  }
  return {};
}

Result<void> Model::forward(const Batch& batch, backend::KvCache& cache, std::vector<float>& logits) {
  if (cache.shape() != kv_cache_shape(cache.block_size())) return fail("the KV cache was made for another model");
  if (auto ok = check_batch(batch, cache); !ok) return ok;
  if (batch.size() == 0) {
    logits.clear();
    return {};
  }
  if (config_.is_gemma()) forward_gemma(config_, weights_, batch, cache, backend_, workspace_, logits);
  else forward_llama(config_, weights_, batch, cache, backend_, workspace_, logits);
  return {};
}

Result<void> check_runnable(const gguf::GgufFile& file) {
  auto config = read_config(file);
  if (!config) return std::unexpected(config.error());
  auto tokenizer = tok::Tokenizer::from_gguf(file);
  if (!tokenizer) return std::unexpected(tokenizer.error());
  if (auto ok = check_vocab_size(*config, *tokenizer, file.name()); !ok) return ok;
  return check_weights(file, *config);
}

Result<std::string> chat_template_source(const gguf::GgufFile& file, const std::string& template_file) {
  if (!template_file.empty()) {
    std::ifstream in(template_file);
    if (!in) return fail("cannot read chat template {}", template_file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  auto source = file.get_string("tokenizer.chat_template");
  if (!source) return fail("{} has no chat template (it may be a base model); give one with --template FILE", file.name());
  return std::string(*source);
}

Result<std::string> chat_template_source(const Model& model, const std::string& template_file) {
  return chat_template_source(model.file(), template_file);
}

}  // namespace tern::model
