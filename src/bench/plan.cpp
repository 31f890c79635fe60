#include "bench/plan.h"

#include <algorithm>
#include <cmath>

namespace tern::bench {

ArrivalClock::ArrivalClock(const ArrivalSpec& arrival, size_t max_count, double duration_s)
    : arrival_(arrival),
      max_count_(max_count),
      duration_s_(duration_s),
      exponential_(arrival.is_open_loop() && arrival.rate > 0 ? arrival.rate : 1.0),
      // Gamma gaps with shape k and mean 1/rate (vLLM's --burstiness): k = 1 is Poisson.
      gamma_(arrival.burstiness > 0 ? arrival.burstiness : 1.0,
             arrival.rate > 0 && arrival.burstiness > 0 ? 1.0 / (arrival.rate * arrival.burstiness) : 1.0) {}

std::optional<double> ArrivalClock::next(std::mt19937_64& rng) {
  if (!arrival_.is_open_loop() || (max_count_ == 0 && duration_s_ <= 0)) return std::nullopt;
  if (max_count_ > 0 && count_ >= max_count_) return std::nullopt;
  if (arrival_.kind == ArrivalSpec::Kind::kRamp) {
    // Non-homogeneous Poisson by time rescaling: with rate r(t) = a + (b - a) t / D, the cumulative
    // intensity is L(t) = a t + (b - a) t^2 / (2 D); unit-rate Poisson points E_i map to t_i = L^-1(E_i).
    if (count_ > 0) {
      const double a = arrival_.from_rate, slope = (arrival_.to_rate - arrival_.from_rate) / duration_s_;
      cumulative_ += unit_(rng);
      t_ = std::abs(slope) < 1e-12 ? cumulative_ / a : (-a + std::sqrt(a * a + 2 * slope * cumulative_)) / slope;
      if (!std::isfinite(t_) || (duration_s_ > 0 && t_ > duration_s_)) {
        max_count_ = count_;  // over: later calls answer nullopt without drawing
        return std::nullopt;
      }
    }
    ++count_;
    return t_;
  }
  if (duration_s_ > 0 && t_ > duration_s_) return std::nullopt;
  const double offset = t_;
  ++count_;
  switch (arrival_.kind) {
    case ArrivalSpec::Kind::kPoisson: t_ += exponential_(rng); break;
    case ArrivalSpec::Kind::kGamma: t_ += gamma_(rng); break;
    default: t_ = static_cast<double>(count_) / arrival_.rate; break;  // no accumulated rounding
  }
  return offset;
}

std::vector<double> arrival_offsets(const ArrivalSpec& arrival, size_t max_count, double duration_s, std::mt19937_64& rng) {
  std::vector<double> offsets;
  ArrivalClock clock(arrival, max_count, duration_s);
  while (auto offset = clock.next(rng)) offsets.push_back(*offset);
  return offsets;
}

namespace {

/// Independent, reproducible random streams per purpose (prefixes, each stage's arrivals and contents),
/// so adding a stage does not change the prompts of the others.
std::mt19937_64 stream(uint64_t seed, uint64_t purpose) {
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(purpose)};
  return std::mt19937_64(sequence);
}

}  // namespace

StagePlan::StagePlan(const Workload& workload, size_t stage_index, size_t stream_index, const PromptBuilder& builder,
                     const std::vector<double>& prefix_weights)
    : spec_(workload.stages[stage_index]),
      workload_(workload),
      builder_(builder),
      prefix_pick_(prefix_weights.begin(), prefix_weights.end()),
      arrival_rng_(stream(workload.seed, 100 + stream_index)),
      content_rng_(stream(workload.seed, 10000 + stream_index)),
      think_rng_(stream(workload.seed, 20000 + stream_index)) {  // its own stream: prompts stay as they were
  std::vector<double> model_weights;
  for (const ModelWeight& entry : workload.models) model_weights.push_back(entry.weight);
  model_pick_ = std::discrete_distribution<size_t>(model_weights.begin(), model_weights.end());
  const size_t num_turns = static_cast<size_t>(workload.sessions.num_turns);
  max_sessions_ = spec_.num_requests > 0 ? (spec_.num_requests + num_turns - 1) / num_turns : 0;
  remaining_requests_ = spec_.num_requests;
  if (workload.dataset && spec_.arrival.kind != ArrivalSpec::Kind::kReplay) {
    dataset_order_.resize(workload.dataset->conversations.size());
    for (uint32_t i = 0; i < dataset_order_.size(); ++i) dataset_order_[i] = i;
    std::mt19937_64 shuffle = stream(workload.seed, 40000 + stream_index);
    std::shuffle(dataset_order_.begin(), dataset_order_.end(), shuffle);
  }
  if (spec_.arrival.is_open_loop() && spec_.arrival.kind != ArrivalSpec::Kind::kReplay) {
    arrivals_.emplace(spec_.arrival, max_sessions_, spec_.duration_s);
  }
}

const PlannedSession* StagePlan::session(size_t index) {
  {
    std::lock_guard lock(sessions_mutex_);
    if (index < sessions_.size()) return &sessions_[index];
    if (exhausted_) return nullptr;
  }
  std::lock_guard generating(generate_mutex_);
  while (true) {
    size_t next = 0;
    {
      std::lock_guard lock(sessions_mutex_);
      if (index < sessions_.size()) return &sessions_[index];  // another thread generated it meanwhile
      if (exhausted_) return nullptr;
      next = sessions_.size();
    }
    PlannedSession session;
    const bool more = generate_one(next, session);  // builds the prompts without holding the deque
    std::lock_guard lock(sessions_mutex_);
    if (!more) {
      exhausted_ = true;
      return nullptr;
    }
    sessions_.push_back(std::move(session));
  }
}

size_t StagePlan::num_generated() const {
  std::lock_guard lock(sessions_mutex_);
  return sessions_.size();
}

bool StagePlan::is_exhausted() const {
  std::lock_guard lock(sessions_mutex_);
  return exhausted_;
}

size_t StagePlan::take_turns(size_t wanted) {
  if (spec_.num_requests <= 0) return wanted;
  const size_t turns = std::min(wanted, remaining_requests_);
  remaining_requests_ -= turns;
  return turns;
}

double StagePlan::draw_think_ms() {
  const SessionSpec& sessions = workload_.sessions;
  if (sessions.think_time_max_ms <= sessions.think_time_ms) return sessions.think_time_ms;
  return std::uniform_real_distribution<double>(sessions.think_time_ms, sessions.think_time_max_ms)(think_rng_);
}

bool StagePlan::generate_one(size_t index, PlannedSession& session) {
  session.index = index;
  if (spec_.arrival.kind == ArrivalSpec::Kind::kReplay) {
    // The log's own arrivals and shapes (bench/replay.h): the random streams only write the text.
    const ReplayTrace& trace = *workload_.replay;
    if (index >= trace.requests.size() || (max_sessions_ > 0 && index >= max_sessions_)) return false;
    const ReplayedRequest& logged = trace.requests[index];
    session.arrival_s = logged.offset_s / spec_.arrival.speedup;
    if (spec_.duration_s > 0 && session.arrival_s > spec_.duration_s) return false;
    session.prefix_group = logged.prefix_group;
    if (workload_.replay_logged_models) session.model = logged.model;
    const int prefix = logged.prefix_group >= 0 ? trace.prefix_tokens[static_cast<size_t>(logged.prefix_group)] : 0;
    PlannedTurn turn;
    turn.max_tokens = logged.output_tokens;
    turn.user_text = builder_.build(std::max(1, logged.prompt_tokens - prefix), content_rng_);
    turn.user_tokens = builder_.count_tokens(turn.user_text);
    session.turns.push_back(std::move(turn));
    return true;
  }
  if (arrivals_) {
    const auto offset = arrivals_->next(arrival_rng_);
    if (!offset) return false;
    session.arrival_s = *offset;
  } else if (max_sessions_ > 0 && index >= max_sessions_) {
    return false;  // closed loop: the count is reached (without one, the stage's duration ends it)
  }
  if (!dataset_order_.empty()) {
    // A conversation of the dataset (in the seed's order, cycling): its system message and user turns.
    const Conversation& conversation = workload_.dataset->conversations[dataset_order_[index % dataset_order_.size()]];
    session.system_text = conversation.system;
    session.system_tokens = conversation.system.empty() ? 0 : builder_.count_tokens(conversation.system);
    const size_t turns_here = take_turns(conversation.turns.size());
    if (turns_here == 0) return false;
    if (!workload_.models.empty()) session.model = workload_.models[model_pick_(content_rng_)].model;
    for (size_t turn = 0; turn < turns_here; ++turn) {
      const DatasetTurn& source = conversation.turns[turn];
      PlannedTurn planned;
      planned.user_text = source.user;
      planned.user_tokens = builder_.count_tokens(source.user);
      planned.max_tokens = source.output_tokens > 0 ? source.output_tokens : workload_.output_tokens.sample(content_rng_);
      if (turn > 0) planned.think_ms = draw_think_ms();
      session.turns.push_back(std::move(planned));
    }
    return true;
  }
  if (workload_.prefix && !workload_.replay && std::uniform_real_distribution<double>(0, 1)(content_rng_) < workload_.prefix->fraction) {
    session.prefix_group = prefix_pick_(content_rng_);
  }
  if (!workload_.models.empty()) session.model = workload_.models[model_pick_(content_rng_)].model;
  const SessionSpec& sessions = workload_.sessions;
  const size_t turns_here = take_turns(static_cast<size_t>(sessions.num_turns));
  for (size_t turn = 0; turn < turns_here; ++turn) {
    PlannedTurn planned;
    const int input_tokens = workload_.input_tokens.sample(content_rng_);
    planned.max_tokens = workload_.output_tokens.sample(content_rng_);
    planned.user_text = builder_.build(input_tokens, content_rng_);
    planned.user_tokens = builder_.count_tokens(planned.user_text);
    if (turn > 0) planned.think_ms = draw_think_ms();
    session.turns.push_back(std::move(planned));
  }
  return true;
}

Plan build_plan(const Workload& workload, const PromptBuilder& builder) {
  Plan plan;
  std::vector<double> prefix_weights;
  if (workload.replay) {
    // A replay's groups have the lengths the log shows; they replace the workload's own prefixes.
    std::mt19937_64 rng = stream(workload.seed, 2);
    for (int tokens : workload.replay->prefix_tokens) {
      plan.prefix_texts.push_back(builder.build(tokens, rng));
      plan.prefix_tokens.push_back(tokens);
    }
  } else if (workload.prefix) {
    std::mt19937_64 rng = stream(workload.seed, 1);
    for (int group = 0; group < workload.prefix->num_groups; ++group) {
      plan.prefix_texts.push_back(builder.build(workload.prefix->length_tokens, rng));
      plan.prefix_tokens.push_back(workload.prefix->length_tokens);
      prefix_weights.push_back(1.0 / std::pow(group + 1, workload.prefix->zipf_exponent));
    }
  }
  size_t measured = 0, warmups = 0;
  for (size_t stage_index = 0; stage_index < workload.stages.size(); ++stage_index) {
    // Warm-ups draw from streams of their own (30000+): the measured stages' requests stay the same.
    const size_t stream_index = workload.stages[stage_index].is_warmup ? 30000 + warmups++ : measured++;
    plan.stages.push_back(std::make_unique<StagePlan>(workload, stage_index, stream_index, builder, prefix_weights));
  }
  return plan;
}

}  // namespace tern::bench
