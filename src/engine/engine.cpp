#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/stop_matcher.h"
#include "tokenizer/detokenizer.h"

namespace tern::engine {
namespace {

/// Speculative decoding: the weight of a step-old verdict in a request's acceptance estimate (about the
/// last 20 steps count).
constexpr double kAcceptanceMemory = 0.95;
/// The engine-wide acceptance counts (a draft model's prior) fade this much per verdict.
constexpr double kPairMemory = 0.999;
/// A draft model's estimates are tested every this many steps on this many requests (Engine::propose_drafts).
constexpr int64_t kExploreEvery = 16;
constexpr size_t kExplorersPerStep = 4;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

/// Log-probabilities of the model's distribution (before penalties and temperature, as OpenAI and
/// vLLM report them): the chosen token's and the `top` most likely.
TokenLogprob logprobs_of(std::span<const float> logits, int32_t token, int top) {
  float max_logit = -INFINITY;
  for (float v : logits) max_logit = std::max(max_logit, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - max_logit));
  const float log_norm = max_logit + static_cast<float>(std::log(sum));
  TokenLogprob out{.token = token, .logprob = logits[static_cast<size_t>(token)] - log_norm, .top = {}};
  if (top > 0) {
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const size_t k = std::min(static_cast<size_t>(top), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<long>(k), ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (size_t i = 0; i < k; ++i) out.top.emplace_back(ids[i], logits[ids[i]] - log_norm);
  }
  return out;
}

}  // namespace

/// What one chunk's rows produced: tokens to emit in order (accepted guesses, then the model's own
/// pick), their logprobs when asked for, or the error that ends the request after them.
struct Engine::Sampled {
  std::vector<int32_t> tokens;
  std::vector<std::optional<TokenLogprob>> logprobs;
  std::string error;
  int64_t num_accepted = 0;  // the first this many tokens are accepted guesses (already in the request's tokens)
  double grammar_seconds = 0;  // applying (and for guesses' rows, filling) grammar masks
};

struct Engine::Active {
  SchedRequest sched;
  GenerationRequest request;
  EventSink sink;
  Sampler sampler;
  tok::IncrementalDetokenizer detokenizer;
  StopMatcher stop;
  int64_t num_generated = 0;
  std::string stop_sequence;  // the stop string that ended it, if one did
  bool counted_prompt = false;
  Clock::time_point first_scheduled{}, first_token{}, last_token{};
  std::unique_ptr<DraftProposer> proposer;  // null: no speculation for this request
  int64_t num_draft_tokens = 0, num_accepted_tokens = 0;
  double recent_accepted = 0, recent_refusals = 0;  // guesses accepted, runs of guesses cut short: decayed per step
  int64_t last_explored_step = -1;                  // draft model: the last step its guesses were verified regardless
  std::vector<EngineTraceEvent> trace;               // with request.trace
  int64_t num_admissions_traced = 0;                 // kScheduled events recorded (one per admission)

  Active(GenerationRequest r, EventSink s, const tok::Tokenizer& tokenizer)
      : request(std::move(r)), sink(std::move(s)), sampler(request.sampling), detokenizer(tokenizer), stop(request.stop) {}
};

Engine::Engine(model::Model& model, EngineConfig config)
    : model_(model),
      config_(std::move(config)),
      cache_(model.make_kv_cache(config_.num_kv_blocks, config_.block_size)),
      kv_(config_.num_kv_blocks, config_.block_size, config_.prefix_caching),
      scheduler_(config_.scheduler, kv_),
      metrics_(config_.model_name) {
  model_.set_max_sequence_length(config_.max_model_len);
  metrics_.set_itl_target(config_.scheduler.itl_target_s, config_.scheduler.itl_target_factor);
  kv_.set_pin_limit(static_cast<int64_t>(std::clamp(config_.max_pinned_fraction, 0.0, 1.0) * static_cast<double>(config_.num_kv_blocks)));
  kv_.set_observer(config_.kv_observer.get());
  if (config_.kv_disk_store) {
    if (config_.kv_disk_store->payload_bytes() != DiskTier::payload_bytes(cache_->shape()) || !config_.prefix_caching) {
      config_.kv_disk_store.reset();  // opened for another layout, or nothing to look up
    } else {
      disk_tier_ = std::make_unique<DiskTier>(*cache_, config_.kv_disk_store);
      kv_.set_lower_tier(disk_tier_.get());
    }
  }
  publish_gauges();
}

Engine::~Engine() { stop(); }

void Engine::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
}

void Engine::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (disk_tier_) disk_tier_->disk().flush();  // what was computed survives the restart
}

std::expected<uint64_t, SubmitFailure> Engine::submit(GenerationRequest request, EventSink sink) {
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (request.prompt.empty()) return std::unexpected(SubmitFailure{SubmitError::kTooLong, "the prompt has no tokens"});
  if (total > config_.max_model_len) {
    return std::unexpected(SubmitFailure{
        SubmitError::kTooLong,
        fmt::format("this model's maximum context length is {} tokens; the request needs {} ({} in the prompt, {} to "
                    "generate): shorten the prompt or lower max_tokens",
                    config_.max_model_len, total, request.prompt.size(), request.max_tokens)});
  }
  if (kv_.blocks_for(total) > config_.num_kv_blocks) {
    return std::unexpected(SubmitFailure{
        SubmitError::kTooLong, fmt::format("the request needs {} tokens of KV cache; the server holds {} (--kv-cache-memory)",
                                           total, config_.num_kv_blocks * config_.block_size)});
  }
  auto active = std::make_unique<Active>(std::move(request), std::move(sink), model_.tokenizer());
  uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return std::unexpected(SubmitFailure{SubmitError::kStopped, "the server is shutting down"});
    if (queued_.load() >= config_.max_waiting) {
      return std::unexpected(SubmitFailure{SubmitError::kQueueFull,
                                           fmt::format("{} requests are already waiting; retry later", queued_.load())});
    }
    id = next_id_++;
    active->sched.id = id;
    inbox_.push_back(std::move(active));
    queued_.fetch_add(1);
    in_flight_.fetch_add(1);
  }
  wake_.notify_one();
  return id;
}

void Engine::cancel(uint64_t id) {
  {
    std::lock_guard lock(mutex_);
    cancels_.push_back(id);
  }
  wake_.notify_one();
}

void Engine::admit(std::unique_ptr<Active> active) {
  SchedRequest& s = active->sched;
  s.tokens = active->request.prompt;
  s.num_prompt_tokens = static_cast<int64_t>(s.tokens.size());
  // K/V computed with an adapter is that adapter's: never shared with another adapter or the base.
  const std::string_view adapter = active->request.adapter ? std::string_view(active->request.adapter->identity) : "";
  const std::string_view parts[] = {config_.model_name, active->request.cache_salt, adapter};
  s.cache_key = KvManager::extra_key(parts);
  for (PinBreakpoint b : active->request.cache_breakpoints) {
    b.num_tokens = std::min(b.num_tokens, s.num_prompt_tokens);
    if (b.num_tokens > 0 && b.ttl.count() > 0) s.pins.breakpoints.push_back(b);
  }
  if (!s.pins.empty()) {
    const std::string_view owner[] = {active->request.pin_owner};
    s.pins.owner = KvManager::extra_key(owner);
    s.pins.owner_quota_blocks = config_.org_pin_quota_blocks;
  }
  s.arrival = active->request.arrival;
  if (active->request.speculate.value_or(config_.speculation.is_default_on)) active->proposer = make_draft_proposer(config_.speculation, config_.draft_model.get());
  scheduler_.add(&s);
  active_.emplace(s.id, std::move(active));
}

void Engine::publish_lora_gauges() {
  if (config_.max_loras > 0) {
    std::vector<std::string_view> running, waiting;
    for (const auto& [id, active] : active_) {
      if (active->request.adapter_name.empty()) continue;
      auto& names = active->sched.state == RequestState::kRunning ? running : waiting;
      if (std::find(names.begin(), names.end(), active->request.adapter_name) == names.end()) names.push_back(active->request.adapter_name);
    }
    std::sort(running.begin(), running.end());
    std::sort(waiting.begin(), waiting.end());
    metrics_.set_lora_gauges({.running = fmt::format("{}", fmt::join(running, ",")),
                              .waiting = fmt::format("{}", fmt::join(waiting, ",")),
                              .max_lora = config_.max_loras});
  }
}

void Engine::publish_gauges() {
  publish_lora_gauges();
  metrics_.set_gauges({.running = scheduler_.num_running(),
                       .waiting = scheduler_.num_waiting(),
                       .kv_usage = kv_.usage(),
                       .prefix_queries = kv_.prefix_stats().queries,
                       .prefix_hits = kv_.prefix_stats().hits,
                       .pins = kv_.pin_stats(),
                       .ram_evictions = kv_.prefix_stats().evictions,
                       .disk_hit_tokens = kv_.prefix_stats().lower_tier_hits,
                       .disk = disk_tier_ ? std::optional<DiskTierStats>(disk_tier_->stats()) : std::nullopt});
}

void Engine::loop() {
  std::vector<std::unique_ptr<Active>> arrived;
  std::vector<uint64_t> cancelled;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || !cancels_.empty() || scheduler_.has_work(); });
      if (stopping_) break;
      arrived.swap(inbox_);
      cancelled.swap(cancels_);
    }
    for (auto& active : arrived) admit(std::move(active));
    arrived.clear();
    for (uint64_t id : cancelled) {
      if (auto it = active_.find(id); it != active_.end()) finish(*it->second, "abort");
    }
    cancelled.clear();

    propose_drafts();
    const SchedulerOutput output = scheduler_.schedule();
    for (uint64_t id : output.preempted) {
      if (auto it = active_.find(id); it != active_.end() && it->second->request.trace) {
        it->second->trace.push_back({.kind = EngineTraceEvent::Kind::kPreempted, .at = Clock::now(), .step = num_steps_ + 1});
      }
    }
    if (config_.draft_model) prefill_drafts(output);
    queued_.store(scheduler_.num_waiting() + [&] { std::lock_guard lock(mutex_); return static_cast<int64_t>(inbox_.size()); }());
    if (output.chunks.empty()) {
      publish_gauges();
      if (scheduler_.num_running() == 0 && scheduler_.num_waiting() > 0) {
        // Cannot happen for requests that passed submit()'s size check; never spin on it.
        abort_all("the request does not fit the KV cache");
      }
      continue;
    }
    // Before the step: its first tokens reach clients while it runs, and a client reading /metrics
    // then must see its adapter as running.
    publish_lora_gauges();
    const auto step_start = Clock::now();
    run_step(output);
    const double step_seconds = seconds(Clock::now() - step_start);
    scheduler_.on_step_time(output, step_seconds);
    if (disk_tier_) disk_tier_->set_recompute_seconds_per_block(scheduler_.cost_model().coefficients().per_token_s * config_.block_size);
    metrics_.on_step({.num_tokens = output.num_tokens,
                      .num_prefill_tokens = output.num_prefill_tokens,
                      .num_preemptions = output.num_preempted,
                      .measured_seconds = step_seconds,
                      .predicted_seconds = output.predicted_seconds,
                      .is_itl_limited = output.is_itl_limited,
                      .cost = scheduler_.cost_model().coefficients()});
    publish_gauges();
  }
  // Shutdown: whatever is left ends now.
  abort_all();
  std::lock_guard lock(mutex_);
  for (auto& active : inbox_) {
    GenerationEvent event;
    event.finished = true;
    event.finish_reason = "abort";
    active->sink(std::move(event));
    in_flight_.fetch_sub(1);
  }
  inbox_.clear();
}

void Engine::abort_all(const std::string& error) {
  std::vector<uint64_t> ids;  // finish() erases from active_
  for (const auto& [id, active] : active_) ids.push_back(id);
  for (uint64_t id : ids) finish(*active_.at(id), "abort", error);
}

void Engine::propose_drafts() {
  StepShape decodes;  // the decodes this step will compute (for the draft model's economics)
  int64_t num_decodes = 0;
  double context = 0;
  // A draft model's acceptance is mostly the pair's (how often the two models agree): a request starts
  // from the pair's estimate rather than 1/2. Prompt lookup's depends on the text, so its prior stays 1/2.
  const bool is_draft_model = config_.draft_model != nullptr;
  const double prior = is_draft_model ? (pair_accepted_ + 1) / (pair_accepted_ + pair_refusals_ + 2) : 0.5;
  explorers_.clear();
  for (auto& [id, active] : active_) {
    SchedRequest& s = active->sched;
    if (s.state != RequestState::kRunning || s.remaining() != 1) continue;
    decodes.add_chunk(static_cast<int64_t>(s.tokens.size()) - 1, 1, 1);
    ++num_decodes;
    context += static_cast<double>(s.tokens.size());
    if (!active->proposer) continue;
    // Each next guess is accepted with this chance, estimated from the request's own recent verdicts (a
    // guess accepted is a success, a guess refused ends a run; the prior counts as two verdicts). The
    // counts fade by kAcceptanceMemory per step, so the estimate follows the text (a copied passage,
    // then free prose) and drifts back towards the prior while nothing is verified: a request whose
    // guesses failed once gets tried again later instead of never.
    active->recent_accepted *= kAcceptanceMemory;
    active->recent_refusals *= kAcceptanceMemory;
    s.draft_acceptance = (active->recent_accepted + 2 * prior) / (active->recent_accepted + active->recent_refusals + 2);
    s.min_draft = config_.speculation.min_draft;
    if (is_draft_model) explorers_.push_back(active.get());
  }
  // Every kExploreEvery steps a few requests' first guesses are made and verified whatever the
  // estimates say (least recently first): estimates that nothing updates would never change their mind.
  const bool explore = is_draft_model && step_count_++ % kExploreEvery == 0;
  const size_t num_explorers = explore ? std::min(explorers_.size(), kExplorersPerStep) : 0;
  std::partial_sort(explorers_.begin(), explorers_.begin() + static_cast<std::ptrdiff_t>(num_explorers), explorers_.end(),
                    [](const Active* a, const Active* b) { return a->last_explored_step < b->last_explored_step; });
  explorers_.resize(num_explorers);
  for (Active* active : explorers_) {
    active->last_explored_step = step_count_;
    active->sched.min_draft = std::max<int64_t>(active->sched.min_draft, 1);
  }
  for (auto& [id, active] : active_) {
    SchedRequest& s = active->sched;
    if (!active->proposer || s.state != RequestState::kRunning || s.remaining() != 1) continue;
    // Every guess accepted still leaves room for the model's own token after them, within max_tokens.
    const int64_t room = std::min<int64_t>({config_.speculation.max_draft, active->request.max_tokens - active->num_generated - 1,
                                            config_.max_model_len - static_cast<int64_t>(s.tokens.size()) - 1});
    active->proposer->propose(
        {.tokens = s.tokens, .max_tokens = room, .acceptance = s.draft_acceptance, .explore = active->last_explored_step == step_count_},
        s.draft);
  }
  if (is_draft_model && num_decodes > 0) {
    // A token is worth what it costs the target in this batch; a guess costs the target one more row.
    const StepCostModel& cost = scheduler_.cost_model();
    const StepCostCoefficients& c = cost.coefficients();
    config_.draft_model->run({.token_seconds = cost.predict(decodes) / static_cast<double>(num_decodes),
                              .verify_seconds = c.per_token_s + c.per_logit_row_s + c.per_context_s * context / static_cast<double>(num_decodes)});
  }
}

void Engine::prefill_drafts(const SchedulerOutput& output) {
  // A draft model computes the prompt chunks with the target (as llama.cpp's draft context does), so a
  // request's first guesses do not wait for its whole prompt to be caught up at decode time.
  for (const ScheduledChunk& chunk : output.chunks) {
    const auto it = active_.find(chunk.request->id);
    if (it == active_.end() || !it->second->proposer || chunk.num_draft > 0 || (chunk.samples && chunk.num_tokens == 1)) continue;
    it->second->proposer->prefill(chunk.request->tokens, chunk.start + chunk.num_tokens);
  }
  config_.draft_model->run_prefill();
}

void Engine::run_step(const SchedulerOutput& output) {
  const auto now = Clock::now();
  batch_.clear();
  batch_.block_tables.clear();
  // Rows of one adapter next to each other, so the forward pass computes each adapter's term for all
  // its rows at once (base-model rows first; otherwise the scheduler's order).
  chunk_order_.resize(output.chunks.size());
  for (size_t i = 0; i < chunk_order_.size(); ++i) chunk_order_[i] = i;
  const auto adapter_of = [&](size_t i) { return active_.at(output.chunks[i].request->id)->request.adapter.get(); };
  std::stable_sort(chunk_order_.begin(), chunk_order_.end(), [&](size_t a, size_t b) { return std::less<>()(adapter_of(a), adapter_of(b)); });
  for (size_t slot = 0; slot < output.chunks.size(); ++slot) {
    const ScheduledChunk& chunk = output.chunks[chunk_order_[slot]];
    auto& active = *active_.at(chunk.request->id);
    if (active.first_scheduled == Clock::time_point{}) active.first_scheduled = now;
    if (active.request.trace) trace_chunk(active, chunk, output.num_tokens, now);
    if (!active.counted_prompt) {
      metrics_.on_prompt_tokens(chunk.request->num_prompt_tokens);
      active.counted_prompt = true;
    }
    batch_.block_tables.emplace_back(chunk.request->blocks.table);
    const std::vector<int32_t>& tokens = chunk.request->tokens;
    for (int64_t i = 0; i < chunk.num_tokens; ++i) {
      // Guesses follow the request's tokens (lookahead slots), and every guess's row is verified.
      const auto index = static_cast<size_t>(chunk.start + i);
      const int32_t token = index < tokens.size() ? tokens[index] : chunk.request->draft[index - tokens.size()];
      const bool wants_logits = chunk.samples && (i + 1 == chunk.num_tokens || i >= chunk.num_tokens - 1 - chunk.num_draft);
      batch_.add(token, static_cast<int32_t>(index), static_cast<int32_t>(slot), wants_logits, active.request.adapter.get());
    }
  }
  // The grammars' masks for this step's samples are filled while the forward pass runs.
  step_constraints_.clear();
  for (const ScheduledChunk& chunk : output.chunks) {
    TokenConstraint* constraint = active_.at(chunk.request->id)->request.constraint.get();
    if (chunk.samples && constraint != nullptr) step_constraints_.push_back(constraint);
  }
  if (!step_constraints_.empty()) {
    if (!mask_worker_) mask_worker_ = std::make_unique<MaskWorker>();
    mask_worker_->start(step_constraints_);
  }
  auto ok = model_.forward(batch_, *cache_, logits_);
  ++num_steps_;
  if (!traced_chunks_.empty()) {
    const double step_seconds = seconds(Clock::now() - now);
    for (auto [active, index] : traced_chunks_) active->trace[index].duration_s = step_seconds;
    traced_chunks_.clear();
  }
  double mask_fill_s = 0;
  double mask_critical_s = 0;  // waiting for the masks, then applying them
  if (!step_constraints_.empty()) {
    const auto wait_start = Clock::now();
    mask_fill_s = mask_worker_->wait();
    mask_critical_s = seconds(Clock::now() - wait_start);
  }
  if (!ok) {
    for (const ScheduledChunk& chunk : output.chunks) finish(*active_.at(chunk.request->id), "abort", ok.error().message);
    return;
  }
  // Sample every chunk first (verifying guesses adds the accepted ones to their requests' tokens), then
  // count the computed tokens (the prefix cache takes the newly full blocks), then emit, which may finish
  // requests and free their blocks.
  sampled_.resize(output.chunks.size());
  size_t row = 0;
  for (size_t slot = 0; slot < chunk_order_.size(); ++slot) {
    const ScheduledChunk& chunk = output.chunks[chunk_order_[slot]];
    if (!chunk.samples) continue;
    sample_chunk(chunk, row, sampled_[slot]);
    mask_critical_s += sampled_[slot].grammar_seconds;
    row += static_cast<size_t>(1 + chunk.num_draft);
  }
  scheduler_.on_computed(output, Clock::now());
  for (size_t slot = 0; slot < chunk_order_.size(); ++slot) {
    const ScheduledChunk& chunk = output.chunks[chunk_order_[slot]];
    if (!chunk.samples) continue;
    const uint64_t id = chunk.request->id;
    Sampled& sampled = sampled_[slot];
    for (size_t i = 0; i < sampled.tokens.size(); ++i) {
      const auto it = active_.find(id);
      if (it == active_.end()) break;  // finished by an earlier token (a stop string, max_tokens)
      process_token(*it->second, sampled.tokens[i], std::move(sampled.logprobs[i]), static_cast<int64_t>(i) < sampled.num_accepted);
    }
    if (!sampled.error.empty()) {
      if (const auto it = active_.find(id); it != active_.end()) finish(*it->second, "error", sampled.error);
    }
  }
  if (!step_constraints_.empty()) metrics_.on_grammar_masks(static_cast<int64_t>(step_constraints_.size()), mask_fill_s, mask_critical_s);
}

void Engine::trace_chunk(Active& active, const ScheduledChunk& chunk, int64_t step_tokens, Clock::time_point now) {
  const SchedRequest& s = *chunk.request;
  if (active.num_admissions_traced <= s.num_preemptions) {  // admitted (again): what the prefix cache had
    ++active.num_admissions_traced;
    const int64_t block = config_.block_size;
    active.trace.push_back({.kind = EngineTraceEvent::Kind::kScheduled, .at = now, .step = num_steps_ + 1,
                            .num_tokens = std::min(s.blocks.num_hit_blocks * block, s.num_prompt_tokens),
                            .disk_tokens = s.blocks.num_lower_tier_hit_blocks * block,
                            .pinned_tokens = s.blocks.num_pinned_hit_blocks * block});
  }
  // A prompt chunk (or a recompute's): more than the one token of a decode, guesses aside.
  if (chunk.start < s.num_prompt_tokens || chunk.num_tokens - chunk.num_draft > 1) {
    traced_chunks_.emplace_back(&active, active.trace.size());
    active.trace.push_back({.kind = EngineTraceEvent::Kind::kPrefillChunk, .at = now, .step = num_steps_ + 1,
                            .start = chunk.start, .num_tokens = chunk.num_tokens, .step_tokens = step_tokens});
  }
}

void Engine::sample_chunk(const ScheduledChunk& chunk, size_t row, Sampled& sampled) {
  sampled.tokens.clear();
  sampled.logprobs.clear();
  sampled.error.clear();
  sampled.num_accepted = 0;
  sampled.grammar_seconds = 0;
  Active& active = *active_.at(chunk.request->id);
  SchedRequest& s = active.sched;
  const auto vocab = static_cast<size_t>(model_.config().vocab_size);
  TokenConstraint* constraint = active.request.constraint.get();
  for (int64_t r = 0; r <= chunk.num_draft; ++r) {
    std::span<float> logits(logits_.data() + (row + static_cast<size_t>(r)) * vocab, vocab);
    if (config_.logits_observer) config_.logits_observer(s.id, logits);
    // Logprobs come from the raw distribution, so they are taken before the sampler edits the row.
    std::vector<float> raw;
    if (active.request.top_logprobs >= 0) raw.assign(logits.begin(), logits.end());
    // A grammar masks what may not come next: the sampler chooses among the rest. The first row's mask
    // was filled during the forward pass; a guess's row needs the state after the guesses before it.
    if (constraint != nullptr) {
      const auto grammar_start = Clock::now();
      const bool any = r == 0 ? constraint->apply_mask(logits) : constraint->mask_logits(logits);
      sampled.grammar_seconds += seconds(Clock::now() - grammar_start);
      if (!any) {
        sampled.error = kGrammarDeadEnd;
        break;
      }
    }
    Sampler::Verdict verdict;
    if (r < chunk.num_draft) {
      verdict = active.sampler.verify(logits, s.tokens, s.draft[static_cast<size_t>(r)]);
    } else {
      verdict.token = active.sampler.sample(logits, s.tokens);
    }
    if (constraint != nullptr && !constraint->accept(verdict.token)) {
      sampled.error = "the sampled token does not fit the output format's grammar";
      break;
    }
    sampled.tokens.push_back(verdict.token);
    sampled.logprobs.push_back(raw.empty() ? std::nullopt : std::optional(logprobs_of(raw, verdict.token, active.request.top_logprobs)));
    if (!verdict.is_guess) break;
    // Accepted: its K/V were computed in this chunk, so it is part of the request now (the next row's
    // penalties see it, and the prefix cache may take a block it fills).
    s.tokens.push_back(verdict.token);
    ++sampled.num_accepted;
  }
  if (chunk.num_draft > 0) {
    active.num_draft_tokens += chunk.num_draft;
    active.num_accepted_tokens += sampled.num_accepted;
    active.recent_accepted += static_cast<double>(sampled.num_accepted);
    if (sampled.num_accepted < chunk.num_draft) active.recent_refusals += 1;
    pair_accepted_ = pair_accepted_ * kPairMemory + static_cast<double>(sampled.num_accepted);
    pair_refusals_ = pair_refusals_ * kPairMemory + (sampled.num_accepted < chunk.num_draft ? 1.0 : 0.0);
    metrics_.on_speculation(chunk.num_draft, sampled.num_accepted);
  }
  s.num_draft_accepted = sampled.num_accepted;
  s.draft.clear();
}

void Engine::process_token(Active& active, int32_t token, std::optional<TokenLogprob> logprob, bool is_in_tokens) {
  const auto now = Clock::now();
  if (active.num_generated == 0) {
    active.first_token = now;
    metrics_.on_first_token(seconds(now - active.request.arrival));
    if (active.request.trace) active.trace.push_back({.kind = EngineTraceEvent::Kind::kFirstToken, .at = now, .step = num_steps_});
  } else {
    metrics_.on_inter_token(seconds(now - active.last_token));
  }
  active.last_token = now;
  ++active.num_generated;
  metrics_.on_generation_token();

  GenerationEvent event;
  event.num_tokens = 1;
  if (logprob) event.logprobs.push_back(std::move(*logprob));
  // The first token's event always goes out, with the prompt's counts (final once the prompt is
  // computed): a stream can report them before the output, as Anthropic's message_start does.
  const bool is_first = active.num_generated == 1;
  if (is_first) event.usage = usage_of(active);
  const auto& end_tokens = model_.end_of_generation_tokens();
  const bool is_end = !active.request.ignore_eos && std::find(end_tokens.begin(), end_tokens.end(), token) != end_tokens.end();
  std::string reason;
  if (is_end) {
    reason = "stop";
  } else {
    if (!is_in_tokens) active.sched.tokens.push_back(token);
    auto step = active.stop.push(active.detokenizer.push(token));
    event.text = std::move(step.text);
    if (step.stopped) {
      reason = "stop";
      active.stop_sequence = std::move(step.matched);
    } else if (active.num_generated >= active.request.max_tokens ||
               active.sched.num_prompt_tokens + active.num_generated >= config_.max_model_len) {
      reason = "length";
    }
  }
  const bool is_worth_sending = is_first || !event.text.empty() || !event.logprobs.empty() || active.request.report_every_token;
  if (reason.empty()) {
    if (is_worth_sending) active.sink(std::move(event));
    return;
  }
  if (reason == "length" || is_end) {
    // Nothing was cut by a stop string: release what the detokenizer and the stop matcher held back.
    auto step = active.stop.push(active.detokenizer.flush());
    event.text += step.text;
    if (!step.stopped) event.text += active.stop.flush();
  }
  if (is_worth_sending || !event.text.empty()) active.sink(std::move(event));
  finish(active, reason);
}

Usage Engine::usage_of(const Active& active) {
  return {.prompt_tokens = active.sched.num_prompt_tokens,
          .completion_tokens = active.num_generated,
          .cached_tokens = std::max<int64_t>(active.sched.num_cached_prompt_tokens, 0),
          .cache_write_tokens_by_ttl_s = active.sched.pin_outcome.written_tokens_by_ttl_s,
          .retention_denied_tokens = active.sched.pin_outcome.denied_tokens};
}

void Engine::finish(Active& active, const std::string& reason, const std::string& error) {
  const auto now = Clock::now();
  const uint64_t id = active.sched.id;
  GenerationEvent event;
  event.finished = true;
  event.finish_reason = reason;
  event.stop_sequence = active.stop_sequence;
  event.error = error;
  event.usage = usage_of(active);
  event.num_draft_tokens = active.num_draft_tokens;
  event.num_accepted_tokens = active.num_accepted_tokens;
  if (active.first_scheduled != Clock::time_point{}) event.queued_seconds = seconds(active.first_scheduled - active.request.arrival);
  event.trace = std::move(active.trace);
  if (active.num_draft_tokens > 0) metrics_.on_speculative_request(active.num_draft_tokens, active.num_accepted_tokens);
  const auto started = active.first_scheduled == Clock::time_point{} ? now : active.first_scheduled;
  const auto first = active.first_token == Clock::time_point{} ? now : active.first_token;
  metrics_.on_finished(reason, seconds(now - active.request.arrival), seconds(started - active.request.arrival),
                       seconds(first - started), seconds(now - first), active.sched.num_prompt_tokens, active.num_generated);
  if (!active.sched.pin_outcome.written_tokens_by_ttl_s.empty()) metrics_.on_cache_writes(active.sched.pin_outcome.written_tokens_by_ttl_s);
  if (!active.request.adapter_name.empty()) {
    metrics_.on_lora_finished(active.request.adapter_name, active.sched.num_prompt_tokens, active.num_generated);
  }
  scheduler_.remove(&active.sched);
  active.sink(std::move(event));
  active_.erase(id);  // destroys `active`
  in_flight_.fetch_sub(1);
}

}  // namespace tern::engine
