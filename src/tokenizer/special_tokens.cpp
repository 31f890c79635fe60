#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace tern::tok {

SpecialTokenMatcher::SpecialTokenMatcher(const Vocab& vocab) : vocab_(&vocab) {
  for (TokenId id = 0; id < static_cast<TokenId>(vocab.size()); ++id) {
    const TokenType type = vocab.types[id];
    const bool is_special = type == TokenType::CONTROL || type == TokenType::USER_DEFINED || type == TokenType::UNKNOWN;
    if (is_special && !vocab.tokens[id].empty()) by_priority_.push_back(id);
  }
  std::stable_sort(by_priority_.begin(), by_priority_.end(),
                   [&](TokenId a, TokenId b) { return vocab.tokens[a].size() > vocab.tokens[b].size(); });
  rank_of_.assign(vocab.size(), 0);
  trie_.emplace_back();
  for (uint32_t rank = 0; rank < by_priority_.size(); ++rank) {
    const TokenId id = by_priority_[rank];
    rank_of_[id] = rank;
    uint32_t node = 0;
    for (char c : vocab.tokens[id]) {
      const auto byte = static_cast<uint8_t>(c);
      uint32_t next = child(node, byte);
      if (next == 0) {
        next = static_cast<uint32_t>(trie_.size());
        trie_.emplace_back();
        auto& children = trie_[node].children;
        children.insert(std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, uint32_t>(byte, 0)),
                        {byte, next});
      }
      node = next;
    }
    trie_[node].token = id;
  }
}

uint32_t SpecialTokenMatcher::child(uint32_t node, uint8_t byte) const {
  const auto& children = trie_[node].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, uint32_t>(byte, 0));
  return it != children.end() && it->first == byte ? it->second : 0;
}

std::vector<Fragment> SpecialTokenMatcher::split(std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({false, -1, text});
  if (by_priority_.empty()) return fragments;

  // Which special tokens occur at all, in priority order.
  std::vector<uint32_t> present;
  for (size_t start = 0; start < text.size(); ++start) {
    uint32_t node = 0;
    for (size_t i = start; i < text.size(); ++i) {
      node = child(node, static_cast<uint8_t>(text[i]));
      if (node == 0) break;
      const TokenId id = trie_[node].token;
      if (id >= 0 && (parse_special || vocab_->types[id] == TokenType::USER_DEFINED)) present.push_back(rank_of_[id]);
    }
  }
  std::sort(present.begin(), present.end());
  present.erase(std::unique(present.begin(), present.end()), present.end());

  std::vector<Fragment> next;
  for (uint32_t rank : present) {
    const TokenId id = by_priority_[rank];
    const std::string_view special = vocab_->tokens[id];
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.is_token) {
        next.push_back(fragment);
        continue;
      }
      std::string_view rest = fragment.text;
      for (size_t at = rest.find(special); at != std::string_view::npos; at = rest.find(special)) {
        if (at > 0) next.push_back({false, -1, rest.substr(0, at)});
        next.push_back({true, id, special});
        rest.remove_prefix(at + special.size());
      }
      if (!rest.empty()) next.push_back({false, -1, rest});
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace tern::tok
