#pragma once
// The serving engine: one thread that owns the scheduler, the KV cache and the model, and runs
//     schedule -> forward (one flat batch) -> sample -> detokenize -> stop checks -> emit events
// in a loop. Other threads reach it only through submit() and cancel(), which post to one queue
// (all locking is here); events come back through each request's sink, called on the engine thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/engine_metrics.h"
#include "engine/kv/disk_tier.h"
#include "engine/grammar/grammar.h"
#include "engine/kv/kv_manager.h"
#include "engine/sampling/sampler.h"
#include "engine/sched/scheduler.h"
#include "engine/spec/draft_model.h"
#include "engine/spec/proposer.h"
#include "model/model.h"

namespace tern::engine {

using Clock = std::chrono::steady_clock;

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_tokens = 16;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int top_logprobs = -1;  ///< -1: no logprobs; 0..20: the sampled token's and this many alternatives
  std::string cache_salt;
  /// Retention asked for prefixes of the prompt (cache_control / prompt_cache_retention): each
  /// breakpoint's tokens stay cached for its TTL after last use, within the owner's quota.
  std::vector<PinBreakpoint> cache_breakpoints;
  std::string pin_owner;  ///< whose pinned-cache quota this request's pins count against (the org)
  /// A LoRA adapter for every token of this request (null: the base model); kept alive by the request,
  /// so an adapter unloaded meanwhile finishes its requests. Its identity is part of the prefix-cache key.
  std::shared_ptr<const model::LoraAdapter> adapter;
  std::string adapter_name;  ///< for metrics
  bool report_every_token = false;  ///< an event per sampled token even when it adds no text (terminal timing)
  /// Constrained decoding (response_format): which tokens may come next; null: any.
  std::shared_ptr<TokenConstraint> constraint;
  /// Speculative decoding for this request: true / false ask for it or opt out; unset: the server's default
  /// (EngineConfig::speculation). Only where the server has a method (off: never).
  std::optional<bool> speculate;
  bool trace = false;  ///< record its timeline (GenerationEvent::trace): queue, cache lookup, prompt chunks, preemptions
  Clock::time_point arrival = Clock::now();
};

/// One thing that happened to a traced request inside the engine (observe/trace.h turns these into
/// its timeline).
struct EngineTraceEvent {
  enum class Kind : uint8_t {
    kScheduled,     ///< admitted to run: its prefix-cache lookup (again after a preemption)
    kPrefillChunk,  ///< a step computed a chunk of its prompt (or of its recompute after a preemption)
    kPreempted,     ///< its KV blocks were taken; it waits to be recomputed
    kFirstToken,
  };
  Kind kind = Kind::kScheduled;
  Clock::time_point at{};
  int64_t step = 0;             ///< the engine's step number
  double duration_s = 0;        ///< kPrefillChunk: the step's time
  int64_t start = 0;            ///< kPrefillChunk: its first position
  int64_t num_tokens = 0;       ///< kPrefillChunk: its tokens; kScheduled: prompt tokens found cached
  int64_t step_tokens = 0;      ///< kPrefillChunk: tokens the whole step computed (all requests)
  int64_t disk_tokens = 0;      ///< kScheduled: of the cached tokens, read back from the disk tier
  int64_t pinned_tokens = 0;    ///< kScheduled: of the cached tokens, in pinned blocks
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  ///< most likely tokens, best first
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
  /// Prompt tokens this request computed and pinned (cache writes), by retention TTL in seconds.
  std::map<int64_t, int64_t> cache_write_tokens_by_ttl_s;
  int64_t retention_denied_tokens = 0;  ///< asked to be pinned, but the quota or pool limit was full
};

/// What a request's sink receives: new text (possibly empty), then a last event with `finished`.
struct GenerationEvent {
  std::string text;
  std::vector<TokenLogprob> logprobs;  ///< for each token sampled since the previous event
  int64_t num_tokens = 0;              ///< tokens sampled since the previous event
  bool finished = false;
  std::string finish_reason;  ///< "stop", "length", "abort"; with finished
  std::string stop_sequence;  ///< with finish_reason "stop": the stop string that ended it (empty: end of turn)
  std::string error;          ///< non-empty: the request failed inside the engine
  Usage usage;                ///< with finished; on the first token's event, the prompt's counts so far
  int64_t num_draft_tokens = 0;     ///< with finished: guesses speculative decoding verified for it
  int64_t num_accepted_tokens = 0;  ///< with finished: of those, accepted
  double queued_seconds = -1;       ///< with finished: from submit() to its first computed step (< 0: never computed)
  std::vector<EngineTraceEvent> trace;  ///< with finished, for a request with `trace`: its timeline in the engine
};

/// Called on the engine thread; must not block (post the event to your own thread).
using EventSink = std::function<void(GenerationEvent&&)>;
/// Sees the raw logits of every row that samples, before penalties and sampling, on the engine thread
/// (the forward-pass goldens compare them with llama.cpp's through the same batched path).
using LogitsObserver = std::function<void(uint64_t request_id, std::span<const float> logits)>;

struct EngineConfig {
  std::string model_name;
  int64_t num_kv_blocks = 0;
  int64_t block_size = 16;
  int64_t max_model_len = 4096;  ///< prompt + generated tokens of one request
  int64_t max_waiting = 4096;    ///< queued requests before submit() refuses
  bool prefix_caching = true;
  double max_pinned_fraction = 0.5;  ///< of the KV blocks, at most this share pinned at once (all orgs)
  int64_t org_pin_quota_blocks = -1;  ///< each pin owner's limit on pinned blocks; < 0: none below the pool's
  /// The KV cache's disk tier (--kv-disk-cache), opened by the caller for this model's KV layout; may be null.
  std::shared_ptr<DiskKvStore> kv_disk_store;
  int64_t max_loras = 0;  ///< adapters the server keeps loaded (metrics only; 0: no adapters served)
  SchedulerConfig scheduler;
  SpeculationConfig speculation;   ///< speculative decoding (off unless configured)
  /// With SpeculationMethod::kDraft: the draft model (engine_stack.h builds it); run on the engine thread.
  std::shared_ptr<DraftModel> draft_model;
  LogitsObserver logits_observer;  ///< optional
  /// Told of every block the prefix cache keys and evicts (KV-cache events, observe/kv_events.h); may be null.
  std::shared_ptr<KvCacheObserver> kv_observer;
};

enum class SubmitError { kQueueFull, kTooLong, kStopped };

struct SubmitFailure {
  SubmitError kind;
  std::string message;
};

class Engine {
 public:
  /// Computes through the model's backend; the KV cache is made there too.
  Engine(model::Model& model, EngineConfig config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();
  /// Finishes every request still in the engine with "abort" and joins the thread.
  void stop();

  /// Queues a request; its id, or why it was refused (queue full, too long for the context or KV
  /// cache, engine stopped).
  std::expected<uint64_t, SubmitFailure> submit(GenerationRequest request, EventSink sink);
  /// Finishes the request with "abort" and frees its blocks at the next step (no-op if done).
  void cancel(uint64_t id);

  /// Requests submitted and not yet finished.
  int64_t num_in_flight() const { return in_flight_.load(); }
  const EngineMetrics& metrics() const { return metrics_; }
  const EngineConfig& config() const { return config_; }

 private:
  struct Active;

  void loop();
  void admit(std::unique_ptr<Active> active);
  /// Speculative decoding: fills each decoding request's guesses for the next step.
  void propose_drafts();
  /// A draft model computes this step's prompt chunks along with the target.
  void prefill_drafts(const SchedulerOutput& output);
  void run_step(const SchedulerOutput& output);
  /// Samples (or verifies the guesses of) one chunk's logit rows starting at `row` into `sampled`.
  struct Sampled;
  void sample_chunk(const ScheduledChunk& chunk, size_t row, Sampled& sampled);
  /// A traced request's chunk this step: its admission (cache lookup) and prompt chunk events.
  void trace_chunk(Active& active, const ScheduledChunk& chunk, int64_t step_tokens, Clock::time_point now);
  /// `is_in_tokens`: an accepted guess, already in the request's tokens.
  void process_token(Active& active, int32_t token, std::optional<TokenLogprob> logprob, bool is_in_tokens = false);
  void finish(Active& active, const std::string& reason, const std::string& error = {});
  static Usage usage_of(const Active& active);
  /// Finishes every admitted request with "abort".
  void abort_all(const std::string& error = {});
  void publish_gauges();
  void publish_lora_gauges();

  model::Model& model_;
  EngineConfig config_;
  std::unique_ptr<backend::KvCache> cache_;
  KvManager kv_;
  std::unique_ptr<DiskTier> disk_tier_;
  Scheduler scheduler_;
  EngineMetrics metrics_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::unique_ptr<Active>> inbox_;
  std::vector<uint64_t> cancels_;
  bool stopping_ = false;
  uint64_t next_id_ = 1;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> queued_{0};  // submitted and not yet admitted to running

  // Engine-thread state.
  std::unordered_map<uint64_t, std::unique_ptr<Active>> active_;
  model::Batch batch_;
  std::vector<size_t> chunk_order_;  // this step's chunks, grouped by adapter
  std::vector<TokenConstraint*> step_constraints_;  // this step's grammars, masks filled during the forward pass
  std::unique_ptr<MaskWorker> mask_worker_;         // made for the first constrained request
  std::vector<float> logits_;
  std::vector<Sampled> sampled_;  // per chunk of the step, in chunk_order_
  // Speculative decoding: all requests' verdicts (fading), the steps proposed, this step's explorers.
  double pair_accepted_ = 0, pair_refusals_ = 0;
  int64_t step_count_ = 0;
  int64_t num_steps_ = 0;  // forward passes run (trace events name their step)
  std::vector<std::pair<Active*, size_t>> traced_chunks_;  // this step's traced prompt chunks: their events
  std::vector<Active*> explorers_;
  std::thread thread_;
};

}  // namespace tern::engine
