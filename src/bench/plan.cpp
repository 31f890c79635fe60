#include "bench/plan.h"

#include <cmath>

namespace tern::bench {

size_t StagePlan::num_requests() const {
  size_t total = 0;
  for (const PlannedSession& session : sessions) total += session.turns.size();
  return total;
}

std::vector<double> arrival_offsets(const ArrivalSpec& arrival, size_t max_count, double duration_s,
                                    std::mt19937_64& rng) {
  std::vector<double> offsets;
  if (!arrival.is_open_loop() || (max_count == 0 && duration_s <= 0)) return offsets;
  auto is_full = [&](double t) { return (max_count > 0 && offsets.size() >= max_count) || (duration_s > 0 && t > duration_s); };
  if (arrival.kind == ArrivalSpec::Kind::kRamp) {
    // Non-homogeneous Poisson by time rescaling: with rate r(t) = a + (b - a) t / D, the cumulative
    // intensity is L(t) = a t + (b - a) t^2 / (2 D); unit-rate Poisson points E_i map to t_i = L^-1(E_i).
    const double a = arrival.from_rate, slope = (arrival.to_rate - arrival.from_rate) / duration_s;
    std::exponential_distribution<double> unit(1.0);
    double cumulative = 0;
    offsets.push_back(0);
    while (true) {
      cumulative += unit(rng);
      const double t = std::abs(slope) < 1e-12 ? cumulative / a
                                                : (-a + std::sqrt(a * a + 2 * slope * cumulative)) / slope;
      if (!std::isfinite(t) || is_full(t)) break;
      offsets.push_back(t);
    }
    return offsets;
  }
  double t = 0;
  std::exponential_distribution<double> exponential(arrival.rate);
  // Gamma gaps with shape k and mean 1/rate (vLLM's --burstiness): k = 1 is Poisson.
  std::gamma_distribution<double> gamma(arrival.burstiness, 1.0 / (arrival.rate * arrival.burstiness));
  while (!is_full(t)) {
    offsets.push_back(t);
    switch (arrival.kind) {
      case ArrivalSpec::Kind::kPoisson: t += exponential(rng); break;
      case ArrivalSpec::Kind::kGamma: t += gamma(rng); break;
      default: t = static_cast<double>(offsets.size()) / arrival.rate; break;  // no accumulated rounding
    }
  }
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

Plan build_plan(const Workload& workload, const PromptBuilder& builder) {
  Plan plan;
  std::discrete_distribution<int> prefix_pick;
  if (workload.prefix) {
    std::mt19937_64 rng = stream(workload.seed, 1);
    plan.prefix_tokens = workload.prefix->length_tokens;
    std::vector<double> weights;
    for (int group = 0; group < workload.prefix->num_groups; ++group) {
      plan.prefix_texts.push_back(builder.build(workload.prefix->length_tokens, rng));
      weights.push_back(1.0 / std::pow(group + 1, workload.prefix->zipf_exponent));
    }
    prefix_pick = std::discrete_distribution<int>(weights.begin(), weights.end());
  }
  std::vector<double> model_weights;
  for (const ModelWeight& entry : workload.models) model_weights.push_back(entry.weight);
  std::discrete_distribution<size_t> model_pick(model_weights.begin(), model_weights.end());
  const int num_turns = workload.sessions.num_turns;

  for (size_t stage_index = 0; stage_index < workload.stages.size(); ++stage_index) {
    const StageSpec& spec = workload.stages[stage_index];
    StagePlan stage{spec, {}};
    std::mt19937_64 arrival_rng = stream(workload.seed, 100 + stage_index);
    std::mt19937_64 content_rng = stream(workload.seed, 10000 + stage_index);
    std::mt19937_64 think_rng = stream(workload.seed, 20000 + stage_index);  // its own stream: prompts stay as they were
    const SessionSpec& sessions = workload.sessions;
    const auto think_ms = [&] {
      if (sessions.think_time_max_ms <= sessions.think_time_ms) return sessions.think_time_ms;
      return std::uniform_real_distribution<double>(sessions.think_time_ms, sessions.think_time_max_ms)(think_rng);
    };
    const size_t max_sessions = spec.num_requests > 0 ? (spec.num_requests + num_turns - 1) / num_turns : 0;
    std::vector<double> offsets;
    if (spec.arrival.is_open_loop()) {
      offsets = arrival_offsets(spec.arrival, max_sessions, spec.duration_s, arrival_rng);
    } else {
      offsets.assign(max_sessions, 0.0);
    }
    size_t remaining_requests = spec.num_requests > 0 ? spec.num_requests : offsets.size() * num_turns;
    for (size_t index = 0; index < offsets.size(); ++index) {
      PlannedSession session;
      session.index = index;
      session.arrival_s = offsets[index];
      if (workload.prefix && std::uniform_real_distribution<double>(0, 1)(content_rng) < workload.prefix->fraction) {
        session.prefix_group = prefix_pick(content_rng);
      }
      if (!workload.models.empty()) session.model = workload.models[model_pick(content_rng)].model;
      const size_t turns_here = std::min<size_t>(num_turns, remaining_requests);
      remaining_requests -= turns_here;
      for (size_t turn = 0; turn < turns_here; ++turn) {
        PlannedTurn planned;
        const int input_tokens = workload.input_tokens.sample(content_rng);
        planned.max_tokens = workload.output_tokens.sample(content_rng);
        planned.user_text = builder.build(input_tokens, content_rng);
        planned.user_tokens = builder.count_tokens(planned.user_text);
        planned.think_ms = turn == 0 ? 0 : think_ms();
        session.turns.push_back(std::move(planned));
      }
      stage.sessions.push_back(std::move(session));
    }
    plan.stages.push_back(std::move(stage));
  }
  return plan;
}

}  // namespace tern::bench
