#pragma once
// A model's vocabulary as stored in GGUF metadata (tokenizer.ggml.*), validated once at load so the
// tokenizers can index it without checks.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/gguf_file.h"
#include "util/result.h"

namespace tern::tok {

using TokenId = int32_t;

/// Token types as numbered in tokenizer.ggml.token_type.
enum class TokenType : int32_t {
  UNDEFINED = 0,
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,         ///< <bos>, <|im_start|>: matched in text only when the caller allows it
  USER_DEFINED = 4,    ///< always matched in text before splitting (e.g. Gemma's "\n\n")
  UNUSED = 5,
  BYTE = 6,            ///< SentencePiece byte fallback <0xAB>
};

enum class TokenizerKind {
  BPE,  ///< byte-level BPE (tokenizer.ggml.model = "gpt2")
  SPM,  ///< SentencePiece-style BPE over scores (tokenizer.ggml.model = "llama")
};

/// Hash for lookups by string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
using TokenMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

struct Vocab {
  TokenizerKind kind = TokenizerKind::BPE;
  std::string model;                 ///< tokenizer.ggml.model
  std::string pre;                   ///< tokenizer.ggml.pre ("default" when absent)
  std::vector<std::string> tokens;   ///< token text as stored (byte-level or with SentencePiece's U+2581)
  std::vector<float> scores;         ///< SPM merge priority; empty for BPE
  std::vector<TokenType> types;
  std::vector<std::string> merges;   ///< BPE merges "left right", rank = index
  TokenMap token_to_id;
  std::optional<TokenId> bos, eos, unknown, padding;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;

  size_t size() const { return tokens.size(); }
  std::optional<TokenId> find(std::string_view text) const {
    auto it = token_to_id.find(text);
    return it == token_to_id.end() ? std::nullopt : std::optional<TokenId>(it->second);
  }
  bool is_control(TokenId id) const { return types[id] == TokenType::CONTROL || types[id] == TokenType::UNKNOWN; }
};

/// Reads and validates the vocabulary of a GGUF file.
Result<Vocab> load_vocab(const gguf::GgufFile& file);

}  // namespace tern::tok
