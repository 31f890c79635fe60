#pragma once
// Capacity search (`tern bench --find-max-rate --slo ...`): the highest open-loop arrival rate at which
// an endpoint still serves the goodput asked for (by default 95 % of requests within every SLO).
//
// Each probe is one Poisson stage at a rate, measured like any stage. The search doubles the rate
// while probes pass, halves it while they fail, then bisects (geometrically) between the highest rate
// that passed and the lowest that failed until they are within `precision` of each other. The answer
// is the highest rate that passed - never an interpolation - with every probe that led there.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/metrics.h"

namespace tern::bench {

struct CapacityOptions {
  double start_rate = 1;    ///< requests / s of the first probe
  double goodput = 0.95;    ///< share of requests that must be good (succeeded, within every SLO)
  double precision = 0.1;   ///< stop once the lowest failing rate is within this factor of the highest passing one
  int max_probes = 12;
  double min_rate = 0.05;   ///< below this the endpoint is reported as unable to meet the SLO at all
};

struct CapacityProbe {
  double rate = 0;                ///< offered, requests / s
  size_t num_requests = 0, num_ok = 0, num_good = 0;
  double good_fraction = 0;       ///< good / all
  double request_throughput = 0;  ///< achieved, successful requests / s
  double output_token_throughput = 0;
  Summary ttft_ms, itl_ms, e2e_ms;  ///< itl: per token
  bool passed = false;
};

struct CapacityResult {
  std::string target;
  double max_rate = 0;            ///< the highest rate that passed; 0: none did
  bool is_bounded = false;        ///< a rate that failed was found (else max_rate is a lower bound)
  bool is_interrupted = false;
  std::vector<CapacityProbe> probes;  ///< in the order they ran
};

/// A probe's figures from the measured stage's metrics; `passed` against `goodput`.
CapacityProbe probe_from_metrics(double rate, const Metrics& metrics, double goodput);

/// Runs the search; `probe(rate)` runs one stage at `rate` and measures it (nullopt: interrupted).
CapacityResult find_max_rate(const std::function<std::optional<CapacityProbe>(double rate)>& probe, const CapacityOptions& options);

nlohmann::json capacity_to_json(const CapacityResult& result, const CapacityOptions& options);
/// The terminal summary of one target's search: its probes by rate and the answer.
std::string capacity_text(const CapacityResult& result, const CapacityOptions& options);

}  // namespace tern::bench
