#include "tokenizer/tokenizer.h"

#include <queue>
#include <unordered_map>

#include "tokenizer/unicode.h"

namespace tern::tok {
namespace {

constexpr char kMergeSeparator = '\x01';  // never inside byte-level BPE token text
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// A piece of the text being merged: symbols form a linked list; a merged-away symbol has length 0.
struct Symbol {
  int prev;
  int next;
  const char* text;
  size_t length;
};

// A candidate merge of two neighbouring symbols. `length` is their combined length when queued: if
// either symbol has changed since, the lengths no longer add up and the candidate is stale.
struct Bigram {
  int left;
  int right;
  size_t length;
  float score;  // BPE: -rank, so that the lowest rank comes first; SPM: the merged token's score
};

struct BigramOrder {
  // Highest score first; on ties the leftmost pair, as in llama.cpp.
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};
using BigramQueue = std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder>;

std::vector<Symbol> split_into_characters(std::string_view text) {
  std::vector<Symbol> symbols;
  size_t offset = 0;
  int index = 0;
  while (offset < text.size()) {
    const size_t length = std::min(text.size() - offset, utf8_sequence_length(static_cast<uint8_t>(text[offset])));
    symbols.push_back({index - 1, offset + length == text.size() ? -1 : index + 1, text.data() + offset, length});
    offset += length;
    ++index;
  }
  return symbols;
}

// Merges the queued pairs until none is left; `add_candidate(left, right)` queues a new pair.
template <class AddCandidate>
void run_merges(std::vector<Symbol>& symbols, BigramQueue& queue, AddCandidate&& add_candidate) {
  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != bigram.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    add_candidate(left.prev, bigram.left);
    add_candidate(bigram.left, left.next);
  }
}

}  // namespace

Result<Tokenizer> Tokenizer::from_gguf(const gguf::GgufFile& file) {
  auto vocab = load_vocab(file);
  if (!vocab) return std::unexpected(vocab.error());
  auto tokenizer = from_vocab(std::move(*vocab));
  if (!tokenizer) return with_context(file.name(), tokenizer.error());
  return tokenizer;
}

Result<Tokenizer> Tokenizer::from_vocab(Vocab vocab) {
  Tokenizer tokenizer;
  if (vocab.kind == TokenizerKind::BPE) {
    auto pre = PreTokenizer::for_model(vocab.pre);
    if (!pre) return std::unexpected(pre.error());
    tokenizer.pre_ = std::make_shared<PreTokenizer>(std::move(*pre));
    auto ranks = std::make_shared<TokenMap>();
    ranks->reserve(vocab.merges.size());
    for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
      const std::string& merge = vocab.merges[rank];
      const size_t space = merge.find(' ', 1);  // from 1: a merge may start with a space character
      if (space == std::string::npos) return fail("BPE merge {} ('{}') has no space separator", rank, merge);
      std::string key = merge;
      key[space] = kMergeSeparator;
      ranks->emplace(std::move(key), static_cast<TokenId>(rank));  // first occurrence keeps its rank
    }
    tokenizer.merge_ranks_ = std::move(ranks);
  } else {
    if (!vocab.unknown && !vocab.find("<0x00>")) {
      return fail("SentencePiece vocabulary has neither byte tokens nor an unknown token");
    }
  }
  auto shared = std::make_shared<const Vocab>(std::move(vocab));
  tokenizer.specials_ = std::make_shared<SpecialTokenMatcher>(*shared);
  tokenizer.vocab_ = std::move(shared);
  return tokenizer;
}

std::vector<TokenId> Tokenizer::encode(std::string_view raw_text, const EncodeOptions& options) const {
  const Vocab& vocab = *vocab_;
  // Invalid UTF-8 becomes U+FFFD first (as in llama.cpp), so every later step sees valid text.
  const std::string text = sanitize_utf8(raw_text);
  std::vector<TokenId> out;
  const bool add_bos = options.add_special && vocab.add_bos;
  if (add_bos) out.push_back(*vocab.bos);
  bool previous_was_special = true;
  for (const Fragment& fragment : specials_->split(text, options.parse_special)) {
    if (fragment.is_token) {
      out.push_back(fragment.token);
      previous_was_special = true;
      continue;
    }
    if (vocab.kind == TokenizerKind::BPE) {
      encode_bpe_fragment(fragment.text, out);
    } else {
      // SentencePiece sees spaces as U+2581, with one prepended at the start of text (add_space_prefix).
      std::string escaped;
      escaped.reserve(fragment.text.size() + 8);
      if (vocab.add_space_prefix && previous_was_special) escaped += kSpmSpace;
      for (char c : fragment.text) {
        if (c == ' ') escaped += kSpmSpace;
        else escaped += c;
      }
      encode_spm_fragment(escaped, out);
    }
    previous_was_special = false;
  }
  if (options.add_special && vocab.add_eos) out.push_back(*vocab.eos);
  return out;
}

void Tokenizer::encode_bpe_fragment(std::string_view text, std::vector<TokenId>& out) const {
  const Vocab& vocab = *vocab_;
  const ByteLevelMapping& bytes = ByteLevelMapping::instance();
  std::string key;
  for (std::string_view raw_word : pre_->split(text)) {
    const std::string word = bytes.encode_all(raw_word);
    std::vector<Symbol> symbols;
    if (pre_->ignore_merges() && vocab.find(word)) {
      symbols.push_back({-1, -1, word.data(), word.size()});
    } else {
      symbols = split_into_characters(word);
    }
    BigramQueue queue;
    auto add_candidate = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const Symbol& a = symbols[left];
      const Symbol& b = symbols[right];
      key.assign(a.text, a.length);
      key += kMergeSeparator;
      key.append(b.text, b.length);
      auto rank = merge_ranks_->find(key);
      if (rank == merge_ranks_->end()) return;
      queue.push({left, right, a.length + b.length, -static_cast<float>(rank->second)});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_candidate(i - 1, i);
    run_merges(symbols, queue, add_candidate);
    for (const Symbol& symbol : symbols) {
      if (symbol.length == 0) continue;
      const std::string_view piece(symbol.text, symbol.length);
      if (auto id = vocab.find(piece)) {
        out.push_back(*id);
        continue;
      }
      // Not a token: fall back to single bytes of the mapped text, where those are tokens.
      for (char c : piece) {
        if (auto id = vocab.find(std::string_view(&c, 1))) out.push_back(*id);
      }
    }
  }
}

TokenId Tokenizer::spm_byte_token(uint8_t byte) const {
  const std::string hex = fmt::format("<0x{:02X}>", byte);
  if (auto id = vocab_->find(hex)) return *id;
  const char c = static_cast<char>(byte);
  if (auto id = vocab_->find(std::string_view(&c, 1))) return *id;
  return vocab_->unknown.value_or(0);
}

void Tokenizer::encode_spm_fragment(std::string_view text, std::vector<TokenId>& out) const {
  const Vocab& vocab = *vocab_;
  std::vector<Symbol> symbols = split_into_characters(text);
  BigramQueue queue;
  // The pair each merged text came from, to split a merged symbol that is not itself a token.
  std::unordered_map<std::string_view, std::pair<int, int>> merged_from;
  auto add_candidate = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string_view joined(symbols[left].text, symbols[left].length + symbols[right].length);
    auto id = vocab.find(joined);
    if (!id) return;
    queue.push({left, right, joined.size(), vocab.scores[*id]});
    merged_from[joined] = {left, right};
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_candidate(i - 1, i);
  run_merges(symbols, queue, add_candidate);

  auto resegment = [&](auto&& self, const Symbol& symbol) -> void {
    const std::string_view piece(symbol.text, symbol.length);
    if (auto id = vocab.find(piece)) {
      out.push_back(*id);
      return;
    }
    auto source = merged_from.find(piece);
    if (source == merged_from.end()) {
      for (char c : piece) out.push_back(spm_byte_token(static_cast<uint8_t>(c)));
      return;
    }
    self(self, symbols[source->second.first]);
    self(self, symbols[source->second.second]);
  };
  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) resegment(resegment, symbols[i]);
}

std::string Tokenizer::token_bytes(TokenId id, bool render_special) const {
  const Vocab& vocab = *vocab_;
  if (id < 0 || static_cast<size_t>(id) >= vocab.size()) return {};
  const std::string& text = vocab.tokens[id];
  switch (vocab.types[id]) {
    case TokenType::CONTROL:
    case TokenType::UNKNOWN:
      return render_special ? text : std::string();
    case TokenType::USER_DEFINED:
      return text;
    case TokenType::BYTE:
      if (vocab.kind == TokenizerKind::SPM && text.size() == 6 && text.starts_with("<0x")) {
        return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
      }
      return text;
    default:
      break;
  }
  std::string out;
  if (vocab.kind == TokenizerKind::SPM) {
    out.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      if (text.compare(pos, kSpmSpace.size(), kSpmSpace) == 0) {
        out += ' ';
        pos += kSpmSpace.size();
      } else {
        out += text[pos++];
      }
    }
    return out;
  }
  const ByteLevelMapping& bytes = ByteLevelMapping::instance();
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const int byte = bytes.decode(next_codepoint(text, &pos));
    if (byte >= 0) out += static_cast<char>(byte);
    else out.append(text, start, pos - start);  // not a byte-level character: keep it as written
  }
  return out;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool render_special) const {
  std::string out;
  for (TokenId id : ids) out += token_bytes(id, render_special);
  return out;
}

}  // namespace tern::tok
