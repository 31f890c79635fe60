#pragma once
// Turns a workload spec into the concrete requests of a run, before the run starts: arrival times, token
// lengths, shared-prefix groups, session turns, models, and the prompt text itself. Everything is drawn from
// the workload's seed, so two runs of one spec (against different targets, or on different days) send the
// same prompts at the same offsets. Building prompts up front also keeps the tokenizer off the event loop.

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
  std::vector<PlannedTurn> turns;
};

struct StagePlan {
  StageSpec spec;
  std::vector<PlannedSession> sessions;
  size_t num_requests() const;
};

struct Plan {
  std::vector<StagePlan> stages;
  std::vector<std::string> prefix_texts;  ///< one per prefix group
  int prefix_tokens = 0;
};

/// Open-loop send offsets (seconds from the stage start, first at 0) for at most `max_count` arrivals
/// (0 = unbounded) within `duration_s` (0 = unbounded; one of the two must bound it).
std::vector<double> arrival_offsets(const ArrivalSpec& arrival, size_t max_count, double duration_s, std::mt19937_64& rng);

Plan build_plan(const Workload& workload, const PromptBuilder& builder);

}  // namespace tern::bench
