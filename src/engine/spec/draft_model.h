#pragma once
// Speculative decoding with a draft model: a smaller model with the target's vocabulary guesses each
// request's next tokens greedily, all the step's requests in one forward pass per guess:
//
//   round 1:  each request's tokens the draft has not computed yet (the last step's accepted guesses and
//             the target's own token; a new request's prompt) -> its first guess
//   round k:  guess k-1 -> guess k, one row per request still guessing
//
// The draft keeps its own paged KV cache, per request: the K/V of the request's tokens up to
// `num_verified`, then those of its guesses not yet verified. At the next step the guesses the target
// accepted become verified and the K/V of the rest is overwritten (as the target's lookahead slots are).
// Full verified blocks go to the draft's own prefix cache, so a shared system prompt is computed once
// by the draft too.
//
// How far to guess is decided round by round from measured costs: guess k of a request is worth
// acceptance^k tokens, each worth what a token costs the target in this step; it costs its share of the
// draft's round (the draft's own step-time model) and the target's time to verify it. A round runs for
// the requests whose guesses are worth more than they cost, so when the target is compute-bound (many
// streams: a token is cheap) no round pays and the draft stays idle. Until the draft's step-time model
// has seen a few rounds it guesses as far as it may (it must run to learn its cost).
//
// The draft runs on the engine thread, on the target's backend (the same threads, one after the other).

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "engine/kv/kv_manager.h"
#include "engine/sched/step_cost_model.h"
#include "engine/spec/proposer.h"
#include "model/batch.h"
#include "model/model.h"
#include "util/result.h"

namespace tern::engine {

/// The target's side of the draft model's choice, from the target's step-time model.
struct DraftEconomics {
  double token_seconds = 0;   ///< what a token costs the target in this step's batch; 0: unknown (guess as far as allowed)
  double verify_seconds = 0;  ///< what verifying one more guess adds to the target's step
};

/// What the draft model did, since it was made.
struct DraftModelStats {
  int64_t rounds = 0;           ///< forward passes
  double seconds = 0;           ///< spent in them
  int64_t guesses = 0;          ///< tokens guessed
  int64_t catch_up_tokens = 0;  ///< request tokens computed (prompts, accepted guesses, the target's tokens)
};

class DraftModel {
 public:
  /// `model` (not owned) computes on its backend; its KV cache holds `num_blocks` blocks of `block_size`
  /// positions. A guess at or past `target_vocab_size` ends a draft (the target has no such token).
  /// `min_draft` guesses are made whatever they cost (SpeculationConfig::min_draft: tests, measurements).
  DraftModel(model::Model& model, int64_t num_blocks, int64_t block_size, int64_t target_vocab_size, bool prefix_caching = true,
             int64_t min_draft = 0);
  ~DraftModel();
  DraftModel(const DraftModel&) = delete;
  DraftModel& operator=(const DraftModel&) = delete;

  /// A proposer for one request; it must not outlive this.
  std::unique_ptr<DraftProposer> make_proposer();
  /// Fills the drafts of every proposer asked since the last run.
  void run(const DraftEconomics& economics);
  /// Computes the prompt chunks proposers were given (DraftProposer::prefill) since the last call, in
  /// one forward pass; nothing while guessing does not pay (see pays()).
  void run_prefill();
  /// Whether the last step's guesses paid for some request (or the costs are still being learned):
  /// while they do not, prompts are not computed ahead, only when a request next guesses.
  bool pays() const { return pays_; }

  const StepCostModel& cost_model() const { return cost_; }
  const DraftModelStats& stats() const { return stats_; }
  int64_t num_free_blocks() const { return kv_.num_free_blocks(); }

  /// Tokens of new prompts the draft computes per step at most (the rest at the following steps, each
  /// request guessing once it has caught up): a long prompt must not stall every stream's next token.
  static constexpr int64_t kMaxCatchUpTokens = 128;
  /// Rounds run whatever they cost until the draft's step-time model has seen this many.
  static constexpr int64_t kExploreRounds = 16;
  static constexpr double kCostMargin = 1.25;

 private:
  class Proposer;
  struct Sequence {
    RequestBlocks blocks;
    int64_t num_verified = 0;         // K/V of the request's tokens [0, num_verified)
    std::vector<int32_t> unverified;  // then these guesses' K/V, at the positions after
    bool is_new = true;               // no blocks taken yet (the prefix cache is looked up first)
  };
  struct Pending {
    Sequence* sequence;
    DraftQuery query;
    std::vector<int32_t>* draft = nullptr;
    int64_t position = 0;  // next position to compute
    int64_t rows = 0;      // this round's rows
    double gain = 1;       // chance that the next guess is accepted: acceptance^depth
    bool guessing = false;
    bool explores = false;  // in this round whatever it costs
  };

  void release(Sequence& sequence);
  /// Brings `p`'s sequence in line with its request's tokens (accepted guesses become verified).
  void sync(Pending& p);
  /// Brings `p`'s sequence up to its request's tokens; false: not caught up within `budget` this step.
  bool catch_up_plan(Pending& p, int64_t& budget);
  /// Chooses this round's requests among `candidates` (best gain first) by worth against cost, with a
  /// margin (kCostMargin): a guess that only breaks even on predictions loses to their errors.
  void choose(std::vector<Pending*>& candidates, const DraftEconomics& economics) const;
  /// One forward pass over `round` (and `catch_up` chunks without logits); appends each guess.
  void forward(const std::vector<Pending*>& round, const std::vector<Pending*>& catch_up, bool is_first_round);

  model::Model& model_;
  std::unique_ptr<backend::KvCache> cache_;
  KvManager kv_;
  StepCostModel cost_;
  int64_t target_vocab_size_;
  int64_t min_draft_;
  uint64_t cache_key_;
  std::vector<Pending> pending_;
  std::vector<Pending> prefills_;
  bool pays_ = true;
  model::Batch batch_;
  std::vector<float> logits_;
  DraftModelStats stats_;
};

/// Whether `draft` can guess for `target`: the same tokenizer kind, special tokens and token text for
/// every id both have, vocabularies within 128 ids of each other in size (as llama.cpp's speculative
/// decoding requires). The error names the first difference.
Result<void> check_draft_compatible(const model::Model& target, const model::Model& draft);

}  // namespace tern::engine
