#pragma once
// Text <-> token ids for a GGUF model, identical to llama.cpp's tokenizer on the same file.
//
//   encode: text -> [split on special tokens] -> raw fragments -> BPE or SentencePiece -> ids
//   decode: ids -> each token's bytes (byte-level mapping undone, U+2581 -> space) -> text

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/vocab.h"
#include "util/result.h"

namespace tern::tok {

struct EncodeOptions {
  /// Add BOS / EOS where the model's metadata asks for them.
  bool add_special = true;
  /// Recognise control tokens (<|im_start|>, <bos>) written in the text. Off for untrusted text, so a
  /// user cannot forge turn markers; user-defined tokens are always recognised, as in llama.cpp.
  bool parse_special = false;
};

class Tokenizer {
 public:
  static Result<Tokenizer> from_gguf(const gguf::GgufFile& file);
  static Result<Tokenizer> from_vocab(Vocab vocab);

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;

  /// The bytes of one token. Control tokens give "" unless `render_special`; bytes may be a partial
  /// UTF-8 character (see IncrementalDetokenizer for streaming).
  std::string token_bytes(TokenId id, bool render_special = false) const;
  /// Concatenated token bytes.
  std::string decode(std::span<const TokenId> ids, bool render_special = false) const;

  const Vocab& vocab() const { return *vocab_; }

 private:
  Tokenizer() = default;
  void encode_bpe_fragment(std::string_view text, std::vector<TokenId>& out) const;
  void encode_spm_fragment(std::string_view text, std::vector<TokenId>& out) const;
  TokenId spm_byte_token(uint8_t byte) const;

  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<const PreTokenizer> pre_;
  std::shared_ptr<const SpecialTokenMatcher> specials_;
  std::shared_ptr<const TokenMap> merge_ranks_;  // "left\x01right" -> rank (BPE)
};

}  // namespace tern::tok
