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

bool Scheduler::preempt_for(SchedRequest* request, SchedulerOutput& output, int64_t& budget) {
  // The newest running request other than `request` gives up its blocks.
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    SchedRequest* victim = *it;
    if (victim == request) continue;
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
    running_.erase(std::next(it).base());
    waiting_.push_front(victim);
    return true;
  }
  return false;
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput output;
  int64_t budget = config_.max_batch_tokens;

  // Running requests: decodes first, then prompts part-way through prefill.
  for (const bool decode_pass : {true, false}) {
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
      SchedRequest* request = running_[i];
      const int64_t remaining = request->remaining();
      if (remaining <= 0 || (remaining == 1) != decode_pass) continue;
      const int64_t n = std::min(remaining, budget);
      bool fits = kv_.allocate_slots(request->blocks, request->num_computed + n);
      while (!fits && preempt_for(request, output, budget)) {
        fits = kv_.allocate_slots(request->blocks, request->num_computed + n);
        // The victim may have stood before `request` (when `request` is the newest): re-find it.
        i = static_cast<size_t>(std::find(running_.begin(), running_.end(), request) - running_.begin());
      }
      if (!fits) break;  // nothing left to preempt: wait for requests to finish
      output.chunks.push_back({request, request->num_computed, n, request->num_computed + n == static_cast<int64_t>(request->tokens.size())});
      output.num_tokens += n;
      budget -= n;
    }
  }

  // Waiting requests, first come first served; none while preempting (blocks are short).
  while (output.num_preempted == 0 && budget > 0 && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < config_.max_running) {
    SchedRequest* request = waiting_.front();
    if (request->blocks.table.empty()) {
      request->num_computed = kv_.acquire_cached_prefix(request->blocks, request->tokens, request->cache_key);
      if (request->num_cached_prompt_tokens < 0) {
        request->num_cached_prompt_tokens = std::min(request->num_computed, request->num_prompt_tokens);
      }
    }
    const int64_t n = std::min(request->remaining(), budget);
    if (!kv_.allocate_slots(request->blocks, request->num_computed + n)) {
      kv_.free(request->blocks);
      request->num_computed = 0;
      break;
    }
    waiting_.pop_front();
    request->state = RequestState::kRunning;
    running_.push_back(request);
    output.chunks.push_back({request, request->num_computed, n, request->num_computed + n == static_cast<int64_t>(request->tokens.size())});
    output.num_tokens += n;
    budget -= n;
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
