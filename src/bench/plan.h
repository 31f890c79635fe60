#pragma once
// Turns a workload spec into the concrete requests of a run: arrival times, token lengths, shared-prefix
// groups, session turns, models, and the prompt text itself. Everything is drawn from the workload's
// seed, so two runs of one spec (against different targets, or on different days) send the same prompts
// at the same offsets.
//
// Lazily: a stage's sessions are generated in order as the run reaches them (StagePlan::session), so
// start-up does not grow with --requests and a stage bounded by --duration alone is open-ended. Each
// purpose (prefixes, a stage's arrivals, its contents, its think times) draws from a random stream of
// its own, so a session is the same whether it is generated first or ten-thousandth, alone or in a
// batch, and every target gets the same ones. Generating a session builds its prompt text: the runner
// does it ahead of need (a window of sessions), off the path that timestamps responses.

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/prompt_builder.h"
#include "bench/workload.h"

namespace tern::bench {

struct PlannedTurn {
  std::string user_text;  ///< this turn's new input (after the history)
  int user_tokens = 0;    ///< its client-side token count
  int max_tokens = 0;     ///< output length asked for
  double think_ms = 0;    ///< pause before this turn, after the previous answer (0 for the first)
};

/// A unit of arrival: one conversation (a single request when sessions have one turn).
struct PlannedSession {
  size_t index = 0;
  double arrival_s = 0;   ///< open loop: offset from the stage start; closed loop: unused
  int prefix_group = -1;  ///< -1: no shared prefix
  std::string model;      ///< empty: the target's own model
  std::string system_text;  ///< a dataset conversation's system message (empty: none)
  int system_tokens = 0;
  std::vector<PlannedTurn> turns;
};

/// Open-loop send offsets (seconds from the stage start, first at 0), one at a time, for at most
/// `max_count` arrivals (0 = unbounded) within `duration_s` (0 = unbounded).
class ArrivalClock {
 public:
  ArrivalClock(const ArrivalSpec& arrival, size_t max_count, double duration_s);
  /// The next offset, or nullopt once the count or the duration is reached.
  std::optional<double> next(std::mt19937_64& rng);

 private:
  ArrivalSpec arrival_;
  size_t max_count_;
  double duration_s_;
  size_t count_ = 0;
  double t_ = 0;           // the next offset (Poisson, gamma, constant)
  double cumulative_ = 0;  // ramp: the unit-rate process
  std::exponential_distribution<double> exponential_;
  std::gamma_distribution<double> gamma_;
  std::exponential_distribution<double> unit_{1.0};
};

/// Open-loop send offsets for at most `max_count` arrivals (0 = unbounded) within `duration_s` (0 =
/// unbounded; one of the two must bound it); empty for a closed loop.
std::vector<double> arrival_offsets(const ArrivalSpec& arrival, size_t max_count, double duration_s, std::mt19937_64& rng);

class StagePlan {
 public:
  /// `stream_index`: which random streams the stage draws from (a measured stage's index among the
  /// measured ones, so adding a warm-up changes no measured request).
  StagePlan(const Workload& workload, size_t stage_index, size_t stream_index, const PromptBuilder& builder,
            const std::vector<double>& prefix_weights);

  const StageSpec& spec() const { return spec_; }
  /// Session `index` (generating it and those before it if needed), or null past the stage's last.
  /// The pointer stays valid for the plan's life. Thread-safe: a look-ahead thread may generate while
  /// the run reads; a session already generated is returned without waiting for a generation.
  const PlannedSession* session(size_t index);
  /// Sessions generated so far.
  size_t num_generated() const;
  /// Whether the stage's last session has been generated.
  bool is_exhausted() const;
  /// Requests the stage sends at most: --requests, or 0 when only its duration bounds it.
  size_t max_requests() const { return spec_.num_requests; }

 private:
  /// Generates the next session into `out` (with generate_mutex_ held); false past the last.
  bool generate_one(size_t index, PlannedSession& out);
  /// Of `wanted` turns, as many as the stage's request count has left (all without a count).
  size_t take_turns(size_t wanted);
  /// The pause before a later turn (its own random stream).
  double draw_think_ms();

  StageSpec spec_;
  const Workload workload_;      // copies: the plan may outlive the caller's
  const PromptBuilder builder_;
  std::discrete_distribution<int> prefix_pick_;
  std::discrete_distribution<size_t> model_pick_;
  std::mt19937_64 arrival_rng_, content_rng_, think_rng_;
  std::optional<ArrivalClock> arrivals_;  // open loop
  std::vector<uint32_t> dataset_order_;   // the dataset's conversations, shuffled by the seed
  size_t max_sessions_ = 0;               // 0: unbounded (a duration ends the stage)
  size_t remaining_requests_ = 0;         // with a request count
  std::mutex generate_mutex_;             // one generation at a time (the random streams' order)
  mutable std::mutex sessions_mutex_;     // the deque and `exhausted_`
  bool exhausted_ = false;
  std::deque<PlannedSession> sessions_;   // a deque: pointers stay valid as it grows
};

struct Plan {
  std::vector<std::unique_ptr<StagePlan>> stages;
  std::vector<std::string> prefix_texts;  ///< one per prefix group
  std::vector<int> prefix_tokens;         ///< per prefix group: its length in tokens
};

/// The plan of a workload: the shared prefixes now, each stage's sessions as they are asked for.
Plan build_plan(const Workload& workload, const PromptBuilder& builder);

}  // namespace tern::bench
