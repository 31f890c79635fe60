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
// When KV blocks run out, the most recently admitted running request is preempted (even when it is the
// one that needs the block, so older requests keep their progress, as in vLLM): its blocks are
// freed and it goes back to the front of the queue to be recomputed (its full blocks usually remain
// in the prefix cache, so recomputing is cheap).

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/kv/kv_manager.h"

namespace tern::engine {

struct SchedulerConfig {
  int64_t max_batch_tokens = 512;  ///< tokens computed per step, all requests together
  int64_t max_running = 64;        ///< requests holding KV blocks at once
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
  RequestBlocks blocks;
  RequestState state = RequestState::kWaiting;
  int64_t num_preemptions = 0;

  int64_t remaining() const { return static_cast<int64_t>(tokens.size()) - num_computed; }
};

struct ScheduledChunk {
  SchedRequest* request;
  int64_t start;       ///< first token index computed this step (= num_computed before the step)
  int64_t num_tokens;  ///< how many
  bool samples;        ///< the chunk reaches the last token: its logits pick the next token
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  int64_t num_tokens = 0;
  int64_t num_preempted = 0;
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, KvManager& kv) : config_(config), kv_(kv) {}

  /// Queues a request (at the back).
  void add(SchedRequest* request);
  /// Drops a finished or cancelled request from either queue and frees its blocks at once.
  void remove(SchedRequest* request);

  SchedulerOutput schedule();
  /// After the forward pass of `output`: advances each request's computed tokens and puts newly full
  /// blocks into the prefix cache.
  void on_computed(const SchedulerOutput& output);

  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  const SchedulerConfig& config() const { return config_; }

 private:
  /// Frees the victim's blocks, drops it from this step's output and queues it first for recompute.
  void preempt(SchedRequest* victim, SchedulerOutput& output, int64_t& budget);

  SchedulerConfig config_;
  KvManager& kv_;
  std::deque<SchedRequest*> waiting_;
  std::vector<SchedRequest*> running_;  // in admission order
};

}  // namespace tern::engine
