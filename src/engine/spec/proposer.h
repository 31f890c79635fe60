#pragma once
// Speculative decoding: a proposer guesses the next few tokens of a request cheaply; the engine then
// computes the request's last token and the guesses in one chunk of the next forward pass (lookahead
// KV slots), keeps the guesses the target model agrees with and one token more from the model itself:
//
//   tokens ... t   draft d1 d2 d3          one chunk, logits at every row
//   rows:      t   d1 d2 d3            ->  sample at row t: == d1? row d1: == d2? ... first miss: its own pick
//   emitted:       d1 d2 x                 (here d3 refused; x sampled where d3 was proposed)
//
// Greedy requests get exactly the tokens they would get without speculation (the rows' logits are
// bit-identical to one-token decodes: the kernels are batch invariant); sampled requests accept a guess
// with the probability the sampler gives it and otherwise draw from the rest (Sampler::verify), coupled
// to the sampler's draw at that position, so they too get the tokens they would get without
// speculation for the same seed. Only accepted tokens count as computed, so the KV cache,
// the prefix cache and the disk tier never see a refused guess. The scheduler decides how many of the
// guesses each step verifies (scheduler.h: the step-time model against each request's acceptance rate).
//
// A proposer is per request (it may index the request's tokens); the engine asks it once per decode step.
// Methods: n-gram prompt lookup (ngram_proposer.h). The interface is what a draft model or an EAGLE-style
// head would implement too: the request's tokens so far in, guesses out.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace tern::engine {

enum class SpeculationMethod {
  kOff,    ///< no speculation
  kNgram,  ///< prompt lookup: continue the latest earlier occurrence of the last n tokens
};

struct SpeculationConfig {
  SpeculationMethod method = SpeculationMethod::kOff;
  bool is_default_on = true;  ///< requests that do not say get speculation (otherwise only those that ask)
  int32_t ngram_min = 2;      ///< shortest suffix looked up (longer ones are tried first)
  int32_t ngram_max = 4;      ///< longest suffix looked up
  int32_t max_draft = 8;      ///< guesses per step at most (the scheduler may verify fewer)
  /// Guesses verified whenever there are any, whatever the step-time model says (as llama.cpp's
  /// --spec-draft-n-min); 0: the scheduler decides every guess.
  int32_t min_draft = 0;

  /// The error names the first value out of range.
  Result<void> validate() const;
};

/// "off" | "ngram" (flags and config files); the error lists what exists.
Result<SpeculationMethod> parse_speculation_method(const std::string& name);
const char* speculation_method_name(SpeculationMethod method);
/// As logs say it: "off", "ngram (2-4, up to 8 guesses)", with ", opt-in" when only requests that ask get it.
std::string describe_speculation(const SpeculationConfig& config);

class DraftProposer {
 public:
  virtual ~DraftProposer() = default;
  /// Guesses up to `max_tokens` tokens to follow `tokens` (the request's prompt and output so far; each
  /// call's `tokens` extends the previous call's) into `draft` (cleared first; may stay empty).
  virtual void propose(std::span<const int32_t> tokens, int64_t max_tokens, std::vector<int32_t>& draft) = 0;
};

/// A proposer for one request; null for SpeculationMethod::kOff.
std::unique_ptr<DraftProposer> make_draft_proposer(const SpeculationConfig& config);

}  // namespace tern::engine
