#pragma once
// The input of a forward pass: a flat list of tokens from any number of sequences. Each token has its
// position in its sequence and the sequence's slot; attention reads that sequence's K/V through its
// block table. Logits are computed only for the tokens marked `wants_logits` (the last prompt token,
// each decode token), in the order they appear. A single prompt is simply a batch of one sequence.
// Each token may also carry a LoRA adapter (model/lora.h); rows of different adapters and of the base
// model share the pass, and consecutive rows of one adapter are computed together.

#include <cstdint>
#include <span>
#include <vector>

namespace tern::model {

struct LoraAdapter;

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq_slots;
  std::vector<uint8_t> wants_logits;
  std::vector<const LoraAdapter*> adapters;  ///< per token; nullptr: the base model
  /// Indexed by seq slot: the blocks holding that sequence's positions (enough to cover every
  /// position in this batch).
  std::vector<std::span<const int32_t>> block_tables;

  void add(int32_t token, int32_t position, int32_t seq_slot, bool logits, const LoraAdapter* adapter = nullptr) {
    tokens.push_back(token);
    adapters.push_back(adapter);
    positions.push_back(position);
    seq_slots.push_back(seq_slot);
    wants_logits.push_back(logits ? 1 : 0);
  }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_logit_rows() const {
    int64_t n = 0;
    for (uint8_t w : wants_logits) n += w;
    return n;
  }
  void clear() {
    tokens.clear();
    positions.clear();
    seq_slots.clear();
    wants_logits.clear();
    adapters.clear();
  }
};

}  // namespace tern::model
