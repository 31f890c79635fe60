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
// Methods: n-gram prompt lookup (ngram_proposer.h) and a draft model (draft_model.h: a small model with
// the target's vocabulary, run for all the step's requests in one batch per guess). The interface is
// what an EAGLE-style head or a suffix tree over past requests would implement too: the request's
// tokens so far in, guesses out.

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
  kDraft,  ///< a draft model with the target's vocabulary guesses greedily (SpeculationConfig::draft_model)
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
  /// kDraft: the draft model's .gguf file (its vocabulary must be the target's; engine_stack.h loads it).
  std::string draft_model{};

  /// The error names the first value out of range.
  Result<void> validate() const;
};

/// "off" | "ngram" | "draft" (flags and config files); the error lists what exists.
Result<SpeculationMethod> parse_speculation_method(const std::string& name);
const char* speculation_method_name(SpeculationMethod method);
/// As logs say it: "off", "ngram (2-4, up to 8 guesses)", "draft model small.gguf (up to 8 guesses)", with
/// ", opt-in" when only requests that ask get it.
std::string describe_speculation(const SpeculationConfig& config);

/// What the engine asks a request's proposer for at one step.
struct DraftQuery {
  std::span<const int32_t> tokens;  ///< the prompt and output so far; each step's extends the previous step's
  int64_t max_tokens = 0;           ///< guesses at most (max_tokens and the context leave room for no more)
  double acceptance = 0.5;          ///< the request's estimated chance that each next guess is accepted
  bool explore = false;             ///< guess at least once whatever the estimates say (the engine verifies it)
};

class DraftProposer {
 public:
  virtual ~DraftProposer() = default;
  /// Guesses up to `query.max_tokens` tokens to follow `query.tokens` into `draft` (cleared first; may
  /// stay empty). A proposer that batches the step's requests (a draft model) fills `draft` at its
  /// DraftModel::run(), which the engine calls after asking every request; `query.tokens` and `draft`
  /// stay valid until then.
  virtual void propose(const DraftQuery& query, std::vector<int32_t>& draft) = 0;
  /// The target computes the request's prompt up to `end` in this step: a proposer that keeps its own
  /// state of the text (a draft model's KV cache) may compute along, so its first guesses need not wait.
  virtual void prefill(std::span<const int32_t> tokens, int64_t end) {
    (void)tokens;
    (void)end;
  }
};

class DraftModel;
/// A proposer for one request; null for SpeculationMethod::kOff, and for kDraft without a `draft` model.
std::unique_ptr<DraftProposer> make_draft_proposer(const SpeculationConfig& config, DraftModel* draft);

}  // namespace tern::engine
