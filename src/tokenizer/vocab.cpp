#include "tokenizer/vocab.h"

namespace tern::tok {
namespace {

Result<std::optional<TokenId>> optional_token(const gguf::GgufFile& file, const std::string& key, size_t vocab_size) {
  const gguf::Value* value = file.find(key);
  if (value == nullptr) return std::optional<TokenId>();
  auto id = value->as_uint();
  if (!id) return fail("{}: {} is not a token id", file.name(), key);
  // Some converters write -1 as u32 max for "none".
  if (*id == 0xFFFFFFFFull) return std::optional<TokenId>();
  if (*id >= vocab_size) return fail("{}: {} = {} is outside the vocabulary ({} tokens)", file.name(), key, *id, vocab_size);
  return std::optional<TokenId>(static_cast<TokenId>(*id));
}

bool optional_bool(const gguf::GgufFile& file, const std::string& key, bool fallback) {
  const gguf::Value* value = file.find(key);
  if (value == nullptr) return fallback;
  return value->as_bool().value_or(fallback);
}

}  // namespace

Result<Vocab> load_vocab(const gguf::GgufFile& file) {
  Vocab vocab;
  auto model = file.get_string("tokenizer.ggml.model");
  if (!model) return std::unexpected(model.error());
  vocab.model = *model;
  if (vocab.model == "gpt2") {
    vocab.kind = TokenizerKind::BPE;
  } else if (vocab.model == "llama") {
    vocab.kind = TokenizerKind::SPM;
  } else {
    return fail("{}: tokenizer '{}' is not supported (byte-level BPE 'gpt2' and SentencePiece 'llama' are)",
                file.name(), vocab.model);
  }
  if (const gguf::Value* pre = file.find("tokenizer.ggml.pre"); pre != nullptr && pre->as_string()) {
    vocab.pre = *pre->as_string();
  } else {
    vocab.pre = "default";
  }

  auto tokens = file.get_array("tokenizer.ggml.tokens");
  if (!tokens) return std::unexpected(tokens.error());
  if ((*tokens)->element_type != gguf::ValueType::STRING) {
    return fail("{}: tokenizer.ggml.tokens is not an array of strings", file.name());
  }
  const size_t n = (*tokens)->strings.size();
  if (n == 0 || n > 0x7FFFFFFF) return fail("{}: vocabulary of {} tokens", file.name(), n);
  vocab.tokens.reserve(n);
  vocab.token_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    vocab.tokens.emplace_back((*tokens)->strings[i]);
    // Duplicates exist in some vocabularies; like llama.cpp, the last id wins.
    vocab.token_to_id[vocab.tokens.back()] = static_cast<TokenId>(i);
  }

  vocab.types.assign(n, TokenType::NORMAL);
  if (const gguf::Value* value = file.find("tokenizer.ggml.token_type")) {
    const gguf::Array* types = value->as_array();
    if (types == nullptr || types->element_type != gguf::ValueType::I32 || types->size != n) {
      return fail("{}: tokenizer.ggml.token_type must be {} i32 values", file.name(), n);
    }
    for (size_t i = 0; i < n; ++i) {
      const int32_t type = types->numeric_at<int32_t>(i, 4);
      if (type < 0 || type > 6) return fail("{}: token {} has unknown type {}", file.name(), i, type);
      vocab.types[i] = static_cast<TokenType>(type);
    }
  }
  if (const gguf::Value* value = file.find("tokenizer.ggml.scores")) {
    const gguf::Array* scores = value->as_array();
    if (scores == nullptr || scores->element_type != gguf::ValueType::F32 || scores->size != n) {
      return fail("{}: tokenizer.ggml.scores must be {} f32 values", file.name(), n);
    }
    vocab.scores.resize(n);
    for (size_t i = 0; i < n; ++i) vocab.scores[i] = scores->numeric_at<float>(i, 4);
  } else if (vocab.kind == TokenizerKind::SPM) {
    return fail("{}: SentencePiece vocabulary without tokenizer.ggml.scores", file.name());
  }
  if (vocab.kind == TokenizerKind::BPE) {
    auto merges = file.get_array("tokenizer.ggml.merges");
    if (!merges) return std::unexpected(merges.error());
    if ((*merges)->element_type != gguf::ValueType::STRING) {
      return fail("{}: tokenizer.ggml.merges is not an array of strings", file.name());
    }
    vocab.merges.assign((*merges)->strings.begin(), (*merges)->strings.end());
  }

  auto assign = [&](const char* key, std::optional<TokenId>& slot) -> Result<void> {
    auto id = optional_token(file, key, n);
    if (!id) return std::unexpected(id.error());
    slot = *id;
    return {};
  };
  for (auto [key, slot] : {std::pair{"tokenizer.ggml.bos_token_id", &vocab.bos},
                           std::pair{"tokenizer.ggml.eos_token_id", &vocab.eos},
                           std::pair{"tokenizer.ggml.unknown_token_id", &vocab.unknown},
                           std::pair{"tokenizer.ggml.padding_token_id", &vocab.padding}}) {
    if (auto ok = assign(key, *slot); !ok) return std::unexpected(ok.error());
  }
  // Defaults follow llama.cpp: SentencePiece models add BOS unless told otherwise.
  vocab.add_bos = optional_bool(file, "tokenizer.ggml.add_bos_token", vocab.kind == TokenizerKind::SPM);
  vocab.add_eos = optional_bool(file, "tokenizer.ggml.add_eos_token", false);
  vocab.add_space_prefix = optional_bool(file, "tokenizer.ggml.add_space_prefix", vocab.kind == TokenizerKind::SPM);
  if (vocab.add_bos && !vocab.bos) return fail("{}: add_bos_token is set but there is no BOS token", file.name());
  if (vocab.add_eos && !vocab.eos) return fail("{}: add_eos_token is set but there is no EOS token", file.name());
  return vocab;
}

}  // namespace tern::tok
