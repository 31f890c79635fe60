#include "engine/sched/scheduler.h"

#include <algorithm>

namespace tern::engine {
namespace {

/// Adds a chunk to the step's shape and its decode / prompt token counts (a chunk past the prompt
/// is a decode; a recompute after preemption counts as prompt work).
void count_chunk(SchedulerOutput& output, const ScheduledChunk& chunk) {
  output.shape.add_chunk(chunk.start, chunk.num_tokens);
  const bool is_decode = chunk.start >= chunk.request->num_prompt_tokens;
  (is_decode ? output.num_decode_tokens : output.num_prefill_tokens) += chunk.num_tokens;
}

/// Recomputes what the step computes from its chunks (after a preemption dropped one).
void recount(SchedulerOutput& output) {
  output.shape = {};
  output.num_decode_tokens = output.num_prefill_tokens = 0;
  for (const ScheduledChunk& chunk : output.chunks) count_chunk(output, chunk);
}

}  // namespace

void Scheduler::add(SchedRequest* request) {
  request->state = RequestState::kWaiting;
  waiting_.push_back(request);
}

void Scheduler::remove(SchedRequest* request, Clock::time_point now) {
  std::erase(running_, request);
  std::erase(waiting_, request);
  kv_.free(request->blocks, now);
  request->state = RequestState::kFinished;
}

void Scheduler::preempt(SchedRequest* victim, SchedulerOutput& output, int64_t& budget, Clock::time_point now) {
  auto chunk = std::find_if(output.chunks.begin(), output.chunks.end(),
                            [victim](const ScheduledChunk& c) { return c.request == victim; });
  if (chunk != output.chunks.end()) {
    budget += chunk->num_tokens;
    output.num_tokens -= chunk->num_tokens;
    output.chunks.erase(chunk);
    recount(output);
  }
  kv_.free(victim->blocks, now);
  victim->num_computed = 0;
  victim->state = RequestState::kWaiting;
  ++victim->num_preemptions;
  ++output.num_preempted;
  std::erase(running_, victim);
  waiting_.push_front(victim);
}

int64_t Scheduler::prefill_allowance(const SchedRequest& request, int64_t wanted, const SchedulerOutput& output,
                                     Clock::time_point now) const {
  // Nobody is streaming in this step: the token budget decides.
  if (config_.itl_target_s <= 0 || output.num_decode_tokens == 0) return wanted;
  // Ageing: past max_prefill_wait_s the target this prompt plans against grows with its wait (twice the
  // wait, twice the target), so a backlog of prompts drains with gradually longer steps instead of
  // either starving or jumping to full-budget steps that stall every stream at once.
  double target_s = config_.itl_target_s;
  if (request.arrival != Clock::time_point{} && config_.max_prefill_wait_s > 0) {
    const double waited_s = std::chrono::duration<double>(now - request.arrival).count();
    target_s *= std::max(1.0, waited_s / config_.max_prefill_wait_s);
  }
  // The largest n whose step still fits the target (the cost only grows with n: binary search).
  const auto fits = [&](int64_t n) {
    StepShape shape = output.shape;
    shape.add_chunk(request.num_computed, n);
    return cost_model_.predict(shape) <= target_s;
  };
  int64_t lo = 0, hi = wanted;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  // Prompts never starve: the first prompt of the step (the oldest in progress) always moves.
  if (output.num_prefill_tokens == 0) lo = std::max(lo, std::min(wanted, config_.min_prefill_chunk));
  return lo;
}

SchedulerOutput Scheduler::schedule(Clock::time_point now) {
  kv_.expire_pins(now);
  SchedulerOutput output;
  int64_t budget = config_.max_batch_tokens;
  // Tokens [num_computed, num_computed + n) of `request` go into this step.
  const auto take = [&](SchedRequest* request, int64_t n) {
    const bool samples = request->num_computed + n == static_cast<int64_t>(request->tokens.size());
    output.chunks.push_back({request, request->num_computed, n, samples});
    count_chunk(output, output.chunks.back());
    output.num_tokens += n;
    budget -= n;
  };
  // How many of `request`'s remaining tokens this step takes: the budget, and for prompts the ITL target.
  const auto chunk_size = [&](const SchedRequest& request) {
    const int64_t wanted = std::min(request.remaining(), budget);
    if (request.remaining() == 1) return wanted;  // a decode
    const int64_t allowed = prefill_allowance(request, wanted, output, now);
    if (allowed < wanted) output.is_itl_limited = true;
    return allowed;
  };

  // Running requests: decodes first, then prompts part-way through prefill.
  for (const bool decode_pass : {true, false}) {
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
      SchedRequest* request = running_[i];
      const int64_t remaining = request->remaining();
      if (remaining <= 0 || (remaining == 1) != decode_pass) continue;
      const int64_t n = chunk_size(*request);
      if (n <= 0) break;  // the step is full under the ITL target; older prompts go first next step
      // Out of blocks: idle pinned blocks go first; then the newest running request gives its blocks
      // up, which may be this one.
      while (!kv_.allocate_slots(request->blocks, request->num_computed + n, /*may_take_pins=*/true)) {
        SchedRequest* victim = running_.back();
        preempt(victim, output, budget, now);
        if (victim == request) break;
      }
      if (request->state != RequestState::kRunning) break;  // preempted itself: everything newer is gone too
      take(request, n);
    }
  }

  // Waiting requests, first come first served; none while preempting (blocks are short).
  while (output.num_preempted == 0 && budget > 0 && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < config_.max_running) {
    SchedRequest* request = waiting_.front();
    const PrefixCacheStats stats_before = kv_.prefix_stats();
    if (request->blocks.table.empty()) {
      request->num_computed = kv_.acquire_cached_prefix(request->blocks, request->tokens, request->cache_key, now);
    }
    const int64_t n = chunk_size(*request);
    // Pins hold their blocks against new arrivals, unless nothing runs (then nothing else would free any).
    if (n <= 0 || !kv_.allocate_slots(request->blocks, request->num_computed + n, /*may_take_pins=*/running_.empty())) {
      // Not admitted after all: give the prefix back, and do not count a lookup that will be redone.
      kv_.free(request->blocks, now);
      kv_.restore_prefix_stats(stats_before);
      request->num_computed = 0;
      break;
    }
    if (request->num_cached_prompt_tokens < 0) {
      request->num_cached_prompt_tokens = std::min(request->num_computed, request->num_prompt_tokens);
    }
    waiting_.pop_front();
    request->state = RequestState::kRunning;
    running_.push_back(request);
    take(request, n);
  }
  output.predicted_seconds = cost_model_.predict(output.shape);
  return output;
}

void Scheduler::on_computed(const SchedulerOutput& output, Clock::time_point now) {
  for (const ScheduledChunk& chunk : output.chunks) {
    SchedRequest* request = chunk.request;
    request->num_computed = chunk.start + chunk.num_tokens;
    kv_.cache_full_blocks(request->blocks, request->tokens, request->num_computed, request->cache_key);
    if (!request->pins.empty()) kv_.apply_pins(request->blocks, request->pins, request->pin_outcome, now);
  }
}

}  // namespace tern::engine
