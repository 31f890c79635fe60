#pragma once
// What `tern inspect` reports about a GGUF model, computed from its metadata and tensor table.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"

namespace tern::models {

struct SpecialToken {
  std::string role;  ///< "bos", "eos", "unknown", "padding", ...
  uint64_t id;
  std::string text;
};

struct TypeShare {
  std::string type;
  uint64_t num_tensors = 0;
  uint64_t num_elements = 0;
  uint64_t bytes = 0;
};

struct ModelSummary {
  std::string path;
  uint32_t gguf_version = 0;
  uint64_t file_bytes = 0;
  std::string architecture;
  std::string name;
  uint64_t num_parameters = 0;
  uint64_t weight_bytes = 0;           ///< bytes of tensor data: what loading maps into memory
  std::vector<TypeShare> type_mix;     ///< by bytes, largest first
  std::optional<uint64_t> context_length;
  std::optional<uint64_t> embedding_length;
  std::optional<uint64_t> num_layers;
  std::optional<uint64_t> num_heads;
  std::optional<uint64_t> num_kv_heads;
  std::optional<uint64_t> kv_bytes_per_token;  ///< F16 K and V over all layers
  std::string tokenizer_model;         ///< tokenizer.ggml.model ("gpt2", "llama", ...)
  std::string tokenizer_kind;          ///< a human name ("byte-level BPE", "SentencePiece")
  std::string pre_tokenizer;
  uint64_t vocab_size = 0;
  std::vector<SpecialToken> special_tokens;
  std::string chat_template;           ///< whole template, empty when the model has none
};

/// Summarises an opened GGUF file. Missing optional metadata leaves fields empty, never fails.
ModelSummary summarize(const gguf::GgufFile& file);

/// "134.5M", "1.2B".
std::string format_count(uint64_t count);
/// "93.8 MiB".
std::string format_bytes(uint64_t bytes);

}  // namespace tern::models
