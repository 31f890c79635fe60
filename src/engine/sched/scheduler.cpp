#include "engine/sched/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "util/units.h"

namespace tern::engine {
namespace {

/// Adds a chunk to the step's shape and its decode / prompt token counts (a chunk past the prompt
/// is a decode; a recompute after preemption counts as prompt work).
void count_chunk(SchedulerOutput& output, const ScheduledChunk& chunk) {
  output.shape.add_chunk(chunk.start, chunk.num_tokens, chunk.samples ? 1 + chunk.num_draft : 0);
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
  victim->draft.clear();
  victim->num_computed = 0;
  victim->state = RequestState::kWaiting;
  ++victim->num_preemptions;
  ++output.num_preempted;
  output.preempted.push_back(victim->id);
  std::erase(running_, victim);
  waiting_.push_front(victim);
}

namespace {

/// Seconds since the request arrived; 0 for a request with no arrival time (tests, internal work).
double waited_seconds(const SchedRequest& request, Clock::time_point now) {
  if (request.arrival == Clock::time_point{}) return 0;
  return std::max(0.0, std::chrono::duration<double>(now - request.arrival).count());
}

}  // namespace

std::optional<PrefillOrder> parse_prefill_order(std::string_view name) {
  if (name == "fcfs") return PrefillOrder::kFcfs;
  if (name == "shortest") return PrefillOrder::kShortestFirst;
  return std::nullopt;
}

Result<void> parse_itl_target(const std::string& text, SchedulerConfig& config) {
  if (!text.empty() && text.back() == 'x') {
    double factor = 0;
    const std::string number = text.substr(0, text.size() - 1);
    size_t used = 0;
    try {
      factor = std::stod(number, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != number.size() || number.empty() || !(factor > 1.0 && factor <= 10.0)) {
      return fail("'{}': a relative target is a multiple of the decode-only step between 1 and 10, such as 1.4x", text);
    }
    config.itl_target_factor = factor;
    config.itl_target_s = 0;
    return {};
  }
  auto seconds = parse_seconds(text);
  if (!seconds) return fail("{} (or a multiple of the decode-only step, such as 1.4x)", seconds.error().message);
  config.itl_target_s = *seconds;
  config.itl_target_factor = 0;
  return {};
}

std::string describe_itl_target(const SchedulerConfig& config) {
  if (config.itl_target_factor > 0) return fmt::format("{:g}x of the decode-only step", config.itl_target_factor);
  if (config.itl_target_s > 0) return fmt::format("{:g} ms", config.itl_target_s * 1000);
  return "off";
}

int64_t Scheduler::prefill_allowance(const SchedRequest& request, int64_t wanted, const SchedulerOutput& output,
                                     Clock::time_point now) const {
  // Nobody is streaming in this step: the token budget decides.
  if ((config_.itl_target_s <= 0 && config_.itl_target_factor <= 0) || output.num_decode_tokens == 0) return wanted;
  double target_s = config_.itl_target_s;
  if (config_.itl_target_factor > 0) {
    // Relative: a bounded multiple of the decodes' own time, whatever the wait (no ageing).
    target_s = config_.itl_target_factor * output.decode_seconds;
  } else if (config_.max_prefill_wait_s > 0) {
    // Ageing: past max_prefill_wait_s the target this prompt plans against grows with its wait (twice
    // the wait, twice the target), so a backlog of prompts drains with gradually longer steps instead
    // of either starving or jumping to full-budget steps that stall every stream at once.
    target_s *= std::max(1.0, waited_seconds(request, now) / config_.max_prefill_wait_s);
  }
  // The largest n whose step still fits the target (the cost only grows with n: binary search).
  const auto fits = [&](int64_t n) {
    StepShape shape = output.shape;
    shape.add_chunk(request.num_computed, n, request.num_computed + n == static_cast<int64_t>(request.tokens.size()) ? 1 : 0);
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

// Prompts by least work left first (shortest remaining processing time), running prompts and waiting
// requests together; the work left is the uncached prompt tokens not yet computed (a cached prefix
// counts as done), so a returning conversation whose history is cached goes ahead of long uncached
// prompts at once and keeps the front while it finishes. Shortest-first alone would starve a long prompt
// under a steady stream of short ones, so the prompt that has waited longest, once past
// max_prefill_wait_s since it arrived, goes first in one step out of every kShortestStepsPerAgedStep + 1
// in which it was passed over (the first prompt of a step gets at least min_prefill_chunk tokens): a
// bounded share for the old, the rest for the short. A waiting prompt that does not fit stops further
// admissions this step, as in FCFS order (blocks are short).
void Scheduler::schedule_prompts_shortest_first(Clock::time_point now, const int64_t& budget,
                                                const std::function<bool(SchedRequest*, bool)>& serve_running,
                                                const std::function<bool(SchedRequest*)>& admit) {
  struct Candidate {
    SchedRequest* request;
    int64_t left;
    double waited_s;
    bool waiting;
  };
  std::vector<Candidate> candidates;
  for (SchedRequest* r : running_) {
    if (r->remaining() > 1) candidates.push_back({r, r->remaining(), waited_seconds(*r, now), false});
  }
  size_t considered = 0;
  for (SchedRequest* r : waiting_) {
    if (++considered > kMaxWaitingConsidered) break;  // a deep queue: the rest keep their FCFS turn
    const int64_t cached = r->blocks.table.empty() ? kv_.cached_prefix_tokens(r->tokens, r->cache_key) : r->num_computed;
    candidates.push_back({r, r->remaining() - cached, waited_seconds(*r, now), true});
  }
  if (candidates.empty()) return;
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.left < b.left; });
  // The longest-waiting prompt past max_prefill_wait_s takes the front in its share of steps.
  const auto oldest = std::max_element(candidates.begin(), candidates.end(),
                                       [](const Candidate& a, const Candidate& b) { return a.waited_s < b.waited_s; });
  const bool aged = oldest->waited_s > config_.max_prefill_wait_s;
  if (oldest == candidates.begin() || !aged) {
    steps_aged_passed_over_ = 0;
  } else if (steps_aged_passed_over_ >= kShortestStepsPerAgedStep) {
    std::rotate(candidates.begin(), oldest, oldest + 1);
    steps_aged_passed_over_ = 0;
  } else {
    ++steps_aged_passed_over_;
  }
  bool admitting = true, admitted = false;
  for (const Candidate& c : candidates) {
    if (budget <= 0) break;
    if (c.waiting) {
      if (admitting && admit(c.request)) {
        admitted = true;
      } else {
        admitting = false;
      }
      continue;
    }
    if (c.request->state != RequestState::kRunning) continue;  // preempted earlier in this step
    if (!serve_running(c.request, /*may_preempt=*/!admitted)) break;
  }
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

  // Running requests with one token to compute (decodes) first, so streams keep their pace.
  // False: the step is full. Without `may_preempt` (a request was admitted this step: it would be the
  // victim), a prompt that finds no free block waits for the next step.
  const auto serve_running = [&](SchedRequest* request, bool may_preempt) {
    const int64_t n = chunk_size(*request);
    if (n <= 0) return false;  // full under the ITL target; the prompts ahead go first next step
    // Out of blocks: idle pinned blocks go first; then the newest running request gives its blocks
    // up, which may be this one.
    while (!kv_.allocate_slots(request->blocks, request->num_computed + n, /*may_take_pins=*/true)) {
      if (!may_preempt) return false;
      SchedRequest* victim = running_.back();
      preempt(victim, output, budget, now);
      if (victim == request) break;
    }
    if (request->state != RequestState::kRunning) return false;  // preempted itself: everything newer is gone too
    take(request, n);
    return true;
  };
  // A waiting request with its cached prefix taken from the KV manager; false: not admitted (no room).
  const auto admit = [&](SchedRequest* request) {
    if (output.num_preempted > 0 || budget <= 0 || static_cast<int64_t>(running_.size()) >= config_.max_running) return false;
    const PrefixCacheStats stats_before = kv_.prefix_stats();
    if (request->blocks.table.empty()) {
      request->num_computed = kv_.acquire_cached_prefix(request->blocks, request->tokens, request->cache_key, now);
    }
    const int64_t n = chunk_size(*request);
    // Pins hold their blocks against new arrivals, unless nothing runs (then nothing else would free
    // any) or the arrival has waited past max_prefill_wait_s: retention must not turn into queueing.
    const bool waited_long = config_.max_prefill_wait_s > 0 && waited_seconds(*request, now) > config_.max_prefill_wait_s;
    if (n <= 0 || !kv_.allocate_slots(request->blocks, request->num_computed + n, running_.empty() || waited_long)) {
      // Not admitted after all: give the prefix back, and do not count a lookup that will be redone.
      kv_.free(request->blocks, now);
      kv_.restore_prefix_stats(stats_before);
      request->num_computed = 0;
      return false;
    }
    if (request->num_cached_prompt_tokens < 0) {
      request->num_cached_prompt_tokens = std::min(request->num_computed, request->num_prompt_tokens);
    }
    std::erase(waiting_, request);
    request->state = RequestState::kRunning;
    running_.push_back(request);
    take(request, n);
    return true;
  };
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    if (running_[i]->remaining() == 1 && !serve_running(running_[i], true)) break;
  }
  add_drafts(output, budget);
  output.decode_seconds = output.num_decode_tokens > 0 ? cost_model_.predict(output.shape) : 0.0;
  if (config_.prefill_order == PrefillOrder::kShortestFirst) {
    schedule_prompts_shortest_first(now, budget, serve_running, admit);
  } else {
    // Prompts part-way through prefill, oldest first; then waiting requests, first come first served
    // (none while preempting: blocks are short).
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
      if (running_[i]->remaining() > 1 && !serve_running(running_[i], true)) break;
    }
    while (!waiting_.empty() && admit(waiting_.front())) {
    }
  }
  output.predicted_seconds = cost_model_.predict(output.shape);
  return output;
}

void Scheduler::add_drafts(SchedulerOutput& output, int64_t& budget) {
  struct Candidate {
    size_t chunk;
    double next_gain;  // expected tokens the next guess adds: acceptance^(guesses taken + 1)
  };
  std::vector<Candidate> candidates;
  double expected_tokens = 0;
  for (size_t i = 0; i < output.chunks.size(); ++i) {
    const ScheduledChunk& chunk = output.chunks[i];
    expected_tokens += 1;
    if (!chunk.request->draft.empty() && chunk.request->draft_acceptance > 0) candidates.push_back({i, chunk.request->draft_acceptance});
  }
  if (candidates.empty()) return;
  // Lengthens `chunk` by its next guess; false: no block for it (never preempt for a guess). The step's
  // shape grows with it (the choice below reads it); the decode / prompt counts are redone at the end.
  const auto take_guess = [&](ScheduledChunk& chunk) {
    if (budget <= 0 || !kv_.allocate_slots(chunk.request->blocks, chunk.start + chunk.num_tokens + 1)) return false;
    output.shape.add_chunk(chunk.start + chunk.num_tokens, 1, 1);
    ++chunk.num_tokens;
    ++chunk.num_draft;
    ++output.num_tokens;
    --budget;
    return true;
  };
  // The guesses asked for unconditionally first (min_draft).
  for (Candidate& c : candidates) {
    ScheduledChunk& chunk = output.chunks[c.chunk];
    const int64_t wanted = std::min<int64_t>(chunk.request->min_draft, static_cast<int64_t>(chunk.request->draft.size()));
    while (chunk.num_draft < wanted && take_guess(chunk)) {
      expected_tokens += c.next_gain;
      c.next_gain *= chunk.request->draft_acceptance;
    }
    if (chunk.num_draft == static_cast<int64_t>(chunk.request->draft.size())) c.next_gain = 0;
  }
  double step_s = cost_model_.predict(output.shape);
  while (budget > 0) {
    const auto best = std::max_element(candidates.begin(), candidates.end(),
                                       [](const Candidate& a, const Candidate& b) { return a.next_gain < b.next_gain; });
    if (best == candidates.end() || best->next_gain <= 0) break;
    ScheduledChunk& chunk = output.chunks[best->chunk];
    StepShape longer = output.shape;
    longer.add_chunk(chunk.start + chunk.num_tokens, 1, 1);
    const double longer_s = cost_model_.predict(longer);
    // Worth it only while the step's expected tokens per second grow: gain / added time > tokens / time.
    if ((expected_tokens + best->next_gain) * step_s <= expected_tokens * longer_s) break;
    if (!take_guess(chunk)) {
      best->next_gain = 0;
      continue;
    }
    step_s = longer_s;
    expected_tokens += best->next_gain;
    best->next_gain = chunk.num_draft < static_cast<int64_t>(chunk.request->draft.size()) ? best->next_gain * chunk.request->draft_acceptance : 0;
  }
  recount(output);  // a guess after a prompt's last token is prompt work, as count_chunk says
}

void Scheduler::on_computed(const SchedulerOutput& output, Clock::time_point now) {
  for (const ScheduledChunk& chunk : output.chunks) {
    SchedRequest* request = chunk.request;
    // A chunk with guesses: its first token and the guesses accepted (the rest of its K/V is refused
    // work, overwritten by the next step's chunk).
    request->num_computed = chunk.start + chunk.num_tokens - chunk.num_draft + (chunk.num_draft > 0 ? request->num_draft_accepted : 0);
    kv_.cache_full_blocks(request->blocks, request->tokens, request->num_computed, request->cache_key);
    if (!request->pins.empty()) kv_.apply_pins(request->blocks, request->pins, request->pin_outcome, now);
  }
}

}  // namespace tern::engine
