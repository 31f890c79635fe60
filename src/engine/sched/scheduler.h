#pragma once
// Iteration-level continuous batching. Every step, `schedule()` picks which requests advance and by
// how many tokens, within a token budget (`max_batch_tokens`) and a cap on running requests.
//
// It tracks tokens, not phases: a request holds its tokens (prompt, then generated ones) and how many
// of them have K/V computed; a step computes the next chunk of the rest. A prompt is thus prefilled in
// chunks, mixed with other requests' decodes. Order within a step:
//   1. running requests with one token to compute (decodes) - first, so inter-token latency stays flat
//      while long prompts arrive;
//   2. running requests part-way through their prompt (chunked prefill), oldest first;
//   3. waiting requests, first come first served, with their cached prefix taken from the KV manager.
// With `prefill_order` kShortestFirst, 2 and 3 are one list instead, least work left first, where a
// cached prefix counts as done: a returning conversation whose history is cached is not queued behind
// long uncached prompts. So that a long prompt never starves, the one that has waited longest, once
// past `max_prefill_wait_s`, goes first in one step of every four in which it was passed over.
//
// Inter-token target (stall-free batching): with `itl_target_s` set, a step that carries decodes takes
// prompt tokens only as far as the step-time model (step_cost_model.h) predicts the step to stay under
// the target, so a long prompt arriving does not stall every running stream. Prompts still progress:
// the oldest prompt in progress gets at least `min_prefill_chunk` tokens every step, and a prompt that
// has waited longer than `max_prefill_wait_s` since it arrived plans against a target scaled by its wait
// (ageing: 2x the wait, 2x the target), so a backlog drains with gradually longer steps rather than
// starving. `max_batch_tokens` bounds every step either way.
//
// The target may instead be relative (`itl_target_factor`, "--itl-target 1.4x"): a step that carries
// decodes may take prompt tokens up to `factor` x the predicted time of its decodes alone, without
// ageing. Every step then stays within a bounded ratio of a decode-only step, which is what the p99 /
// p50 of inter-token latency measures, at any load and on any machine; prompts move by the slack and
// the `min_prefill_chunk` floor of the oldest prompt (so none starves), and a backlog makes TTFT, not
// ITL, longer.
//
// Speculative decoding (engine/spec/proposer.h): a decode may carry guessed tokens (`draft`) to verify
// in the same chunk. How many of them a step takes is a throughput decision made after the decodes are
// planned and before the prompts: guesses are added one at a time, each to the request whose next guess
// is likeliest to be accepted (its acceptance rate a, a guess at depth k is worth a^k expected tokens),
// while the expected tokens per predicted second of the step still grow. One stream on a memory-bound
// step takes several guesses (a token more costs little next to the weights read once); a batch of many
// streams is compute-bound, each extra token costs its full share, and guesses stop unless they are
// nearly certain. A guess never preempts anyone: one that needs a block when none is free is not
// verified this step.
//
// When KV blocks run out, the most recently admitted running request is preempted (even when it is the
// one that needs the block, so older requests keep their progress, as in vLLM): its blocks are
// freed and it goes back to the front of the queue to be recomputed (its full blocks usually remain
// in the prefix cache, so recomputing is cheap).

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/kv/kv_manager.h"
#include "engine/sched/step_cost_model.h"
#include "util/result.h"

namespace tern::engine {

using Clock = std::chrono::steady_clock;

/// Which prompt gets the step's prefill tokens first.
enum class PrefillOrder {
  kFcfs,           ///< running prompts oldest first, then waiting ones in arrival order
  kShortestFirst,  ///< least uncached prompt left first; the longest-waiting prompt goes first one step in four
};

/// "fcfs" | "shortest" (flags and config files); nullopt for anything else.
std::optional<PrefillOrder> parse_prefill_order(std::string_view name);

struct SchedulerConfig;
/// tern serve's inter-token target: steps with decodes at most 1.4 x their decodes alone, so that the
/// inter-token p99 stays within 1.5 x the p50 at any load (docs/benchmarks.md has the measurements).
inline constexpr const char* kDefaultItlTarget = "1.4x";
/// An inter-token target as flags and config files give it: a duration ("100ms", "0.1"; "off" or 0:
/// none) into itl_target_s, or a multiple of the decode-only step ("1.4x", 1 < x <= 10) into
/// itl_target_factor. The error names the value.
Result<void> parse_itl_target(const std::string& text, SchedulerConfig& config);
/// The inter-token target in force, as logs say it: "1.4x of the decode-only step", "100 ms" or "off".
std::string describe_itl_target(const SchedulerConfig& config);

struct SchedulerConfig {
  int64_t max_batch_tokens = 512;  ///< tokens computed per step, all requests together
  int64_t max_running = 64;        ///< requests holding KV blocks at once
  double itl_target_s = 0;         ///< predicted step time to keep under while streams decode; 0: off
  double itl_target_factor = 0;    ///< or: at most this x the step's decodes alone (no ageing); 0: off
  int64_t min_prefill_chunk = 16;  ///< prompt tokens the oldest prompt in progress gets per step, at least
  double max_prefill_wait_s = 2.0; ///< after this long since arrival, a prompt's target grows with its wait
  PrefillOrder prefill_order = PrefillOrder::kFcfs;
  StepCostCoefficients step_cost_prior{};
};

enum class RequestState { kWaiting, kRunning, kFinished };

/// What the scheduler knows of a request. The engine owns it and keeps it alive while scheduled.
struct SchedRequest {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  ///< prompt, then generated tokens
  int64_t num_prompt_tokens = 0;
  int64_t num_computed = 0;             ///< tokens whose K/V are in the cache
  int64_t num_cached_prompt_tokens = -1;  ///< prompt tokens found in the prefix cache at first admission
  uint64_t cache_key = 0;                ///< KvManager::extra_key of model, adapter, cache salt
  PinRequest pins;                       ///< retention asked for its prompt's prefix (often none)
  PinOutcome pin_outcome;                ///< what the pins did: tokens written (pinned) and denied
  RequestBlocks blocks;
  RequestState state = RequestState::kWaiting;
  int64_t num_preemptions = 0;
  Clock::time_point arrival{};  ///< for the ageing rule
  /// Speculative decoding: guesses to follow the last token, proposed before each step (a decode only);
  /// the scheduler verifies a prefix of them (ScheduledChunk::num_draft).
  std::vector<int32_t> draft;
  double draft_acceptance = 0;   ///< the estimated chance that each next guess is accepted
  int64_t min_draft = 0;         ///< guesses verified whatever the step-time model says (when there are any)
  int64_t num_draft_accepted = 0;  ///< set by the engine after the step: guesses accepted (now in `tokens`)

  int64_t remaining() const { return static_cast<int64_t>(tokens.size()) - num_computed; }
};

struct ScheduledChunk {
  SchedRequest* request;
  int64_t start;       ///< first token index computed this step (= num_computed before the step)
  int64_t num_tokens;  ///< how many
  bool samples;        ///< the chunk reaches the last token: its logits pick the next token
  int64_t num_draft = 0;  ///< the last this many tokens are request->draft's first (logits at every row)
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  int64_t num_tokens = 0;
  int64_t num_preempted = 0;
  std::vector<uint64_t> preempted;  ///< the requests preempted this step
  int64_t num_decode_tokens = 0;
  int64_t num_prefill_tokens = 0;  ///< the chosen prompt chunk(s), all requests together
  StepShape shape;                 ///< what the step computes, for the step-time model
  double predicted_seconds = 0;    ///< the model's estimate for this step
  double decode_seconds = 0;       ///< the model's estimate for the step's decodes alone
  bool is_itl_limited = false;     ///< the ITL target cut a prompt chunk short
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, KvManager& kv) : config_(config), kv_(kv), cost_model_(config.step_cost_prior) {}

  /// Queues a request (at the back).
  void add(SchedRequest* request);
  /// Drops a finished or cancelled request from either queue and frees its blocks at once.
  void remove(SchedRequest* request, Clock::time_point now = Clock::now());

  /// Ends expired pins, then plans the step. Running requests take idle pinned blocks before anyone
  /// is preempted; waiting ones only when nothing runs (pins never starve the running).
  SchedulerOutput schedule(Clock::time_point now = Clock::now());
  /// After the forward pass of `output`: advances each request's computed tokens, puts newly full
  /// blocks into the prefix cache and pins those its retention covers.
  void on_computed(const SchedulerOutput& output, Clock::time_point now = Clock::now());
  /// The measured wall time of the step `output` described (forward pass and sampling): teaches the
  /// step-time model.
  void on_step_time(const SchedulerOutput& output, double seconds) { cost_model_.observe(output.shape, seconds); }
  const StepCostModel& cost_model() const { return cost_model_; }

  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  const SchedulerConfig& config() const { return config_; }

 private:
  /// Frees the victim's blocks, drops it from this step's output and queues it first for recompute.
  void preempt(SchedRequest* victim, SchedulerOutput& output, int64_t& budget, Clock::time_point now);
  /// Lengthens the step's decodes by their guesses while expected tokens per predicted second grow.
  void add_drafts(SchedulerOutput& output, int64_t& budget);
  /// How many of `request`'s next `wanted` prompt tokens fit this step under the ITL target.
  int64_t prefill_allowance(const SchedRequest& request, int64_t wanted, const SchedulerOutput& output,
                            Clock::time_point now) const;

  /// PrefillOrder::kShortestFirst: running prompts and waiting requests together, least work left first,
  /// with a bounded share of steps for the longest-waiting one.
  void schedule_prompts_shortest_first(Clock::time_point now, const int64_t& budget,
                                       const std::function<bool(SchedRequest*, bool)>& serve_running,
                                       const std::function<bool(SchedRequest*)>& admit);

  /// Waiting requests whose cached prefix is looked up each step for kShortestFirst (a bound on the work).
  static constexpr size_t kMaxWaitingConsidered = 256;
  /// kShortestFirst: steps in which a prompt past max_prefill_wait_s is passed over for shorter work
  /// before it goes first once (it then gets at least min_prefill_chunk tokens): 3 gives the old a
  /// quarter of the steps' first place while short work is waiting, the short three quarters.
  static constexpr int kShortestStepsPerAgedStep = 3;

  SchedulerConfig config_;
  KvManager& kv_;
  StepCostModel cost_model_;
  std::deque<SchedRequest*> waiting_;
  std::vector<SchedRequest*> running_;  // in admission order
  int steps_aged_passed_over_ = 0;      // kShortestFirst: see kShortestStepsPerAgedStep
};

}  // namespace tern::engine
