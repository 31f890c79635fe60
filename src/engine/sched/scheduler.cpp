#include "engine/sched/scheduler.h"

#include <algorithm>

namespace tern::engine {

void Scheduler::add(SchedRequest* request) {
  request->state = RequestState::kWaiting;
  waiting_.push_back(request);
}

void Scheduler::remove(SchedRequest* request) {
  std::erase(running_, request);
  std::erase(waiting_, request);
  kv_.free(request->blocks);
  request->state = RequestState::kFinished;
}

void Scheduler::preempt(SchedRequest* victim, SchedulerOutput& output, int64_t& budget) {
  auto chunk = std::find_if(output.chunks.begin(), output.chunks.end(),
                            [victim](const ScheduledChunk& c) { return c.request == victim; });
  if (chunk != output.chunks.end()) {
    budget += chunk->num_tokens;
    output.num_tokens -= chunk->num_tokens;
    output.chunks.erase(chunk);
  }
  kv_.free(victim->blocks);
  victim->num_computed = 0;
  victim->state = RequestState::kWaiting;
  ++victim->num_preemptions;
  ++output.num_preempted;
  std::erase(running_, victim);
  waiting_.push_front(victim);
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput output;
  int64_t budget = config_.max_batch_tokens;
  // Tokens [num_computed, num_computed + n) of `request` go into this step.
  const auto take = [&](SchedRequest* request, int64_t n) {
    const bool samples = request->num_computed + n == static_cast<int64_t>(request->tokens.size());
    output.chunks.push_back({request, request->num_computed, n, samples});
    output.num_tokens += n;
    budget -= n;
  };

  // Running requests: decodes first, then prompts part-way through prefill.
  for (const bool decode_pass : {true, false}) {
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
      SchedRequest* request = running_[i];
      const int64_t remaining = request->remaining();
      if (remaining <= 0 || (remaining == 1) != decode_pass) continue;
      const int64_t n = std::min(remaining, budget);
      // Out of blocks: the newest running request gives its blocks up, which may be this one.
      while (!kv_.allocate_slots(request->blocks, request->num_computed + n)) {
        SchedRequest* victim = running_.back();
        preempt(victim, output, budget);
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
      request->num_computed = kv_.acquire_cached_prefix(request->blocks, request->tokens, request->cache_key);
    }
    const int64_t n = std::min(request->remaining(), budget);
    if (!kv_.allocate_slots(request->blocks, request->num_computed + n)) {
      // Not admitted after all: give the prefix back, and do not count a lookup that will be redone.
      kv_.free(request->blocks);
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
  return output;
}

void Scheduler::on_computed(const SchedulerOutput& output) {
  for (const ScheduledChunk& chunk : output.chunks) {
    SchedRequest* request = chunk.request;
    request->num_computed = chunk.start + chunk.num_tokens;
    kv_.cache_full_blocks(request->blocks, request->tokens, request->num_computed, request->cache_key);
  }
}

}  // namespace tern::engine
