#include "bench/capacity.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>


namespace tern::bench {

CapacityProbe probe_from_metrics(double rate, const Metrics& metrics, double goodput) {
  CapacityProbe probe;
  probe.rate = rate;
  probe.num_requests = metrics.num_requests;
  probe.num_ok = metrics.num_ok;
  probe.num_good = metrics.num_good;
  probe.good_fraction = metrics.good_fraction;
  probe.request_throughput = metrics.request_throughput;
  probe.output_token_throughput = metrics.output_token_throughput;
  probe.ttft_ms = metrics.latency.ttft_ms;
  probe.itl_ms = metrics.latency.itl_token_ms;
  probe.e2e_ms = metrics.latency.e2e_ms;
  // A probe with no request (a stage too short for its rate) proves nothing: it fails.
  probe.passed = metrics.num_requests > 0 && metrics.good_fraction >= goodput;
  return probe;
}

CapacityResult find_max_rate(const std::function<std::optional<CapacityProbe>(double rate)>& probe, const CapacityOptions& options) {
  CapacityResult result;
  double passed = 0;                                         // the highest rate that passed
  double failed = std::numeric_limits<double>::infinity();  // the lowest rate that failed
  double rate = options.start_rate;
  for (int i = 0; i < options.max_probes; ++i) {
    auto measured = probe(rate);
    if (!measured) {
      result.is_interrupted = true;
      break;
    }
    result.probes.push_back(*measured);
    if (measured->passed) {
      passed = std::max(passed, rate);
    } else {
      failed = std::min(failed, rate);
    }
    if (std::isinf(failed)) {
      rate *= 2;  // nothing failed yet: up
    } else if (passed == 0) {
      rate /= 2;  // nothing passed yet: down
      if (rate < options.min_rate) break;
    } else if (failed / passed <= 1 + options.precision) {
      break;
    } else {
      rate = std::sqrt(passed * failed);  // rates matter in ratios: bisect geometrically
    }
  }
  result.max_rate = passed;
  result.is_bounded = !std::isinf(failed);
  return result;
}

namespace {

nlohmann::json summary_json(const Summary& s) { return {{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"mean", s.mean}}; }

}  // namespace

nlohmann::json capacity_to_json(const CapacityResult& result, const CapacityOptions& options) {
  nlohmann::json probes = nlohmann::json::array();
  for (const CapacityProbe& p : result.probes) {
    probes.push_back({{"rate", p.rate}, {"requests", p.num_requests}, {"ok", p.num_ok}, {"good", p.num_good},
                      {"good_fraction", p.good_fraction}, {"passed", p.passed}, {"request_throughput", p.request_throughput},
                      {"output_token_throughput", p.output_token_throughput}, {"ttft_ms", summary_json(p.ttft_ms)},
                      {"itl_ms", summary_json(p.itl_ms)}, {"e2e_ms", summary_json(p.e2e_ms)}});
  }
  return {{"target", result.target}, {"max_rate", result.max_rate}, {"bounded", result.is_bounded},
          {"interrupted", result.is_interrupted}, {"goodput_target", options.goodput}, {"precision", options.precision},
          {"probes", probes}};
}

std::string capacity_text(const CapacityResult& result, const CapacityOptions& options) {
  std::vector<CapacityProbe> by_rate = result.probes;
  std::sort(by_rate.begin(), by_rate.end(), [](const CapacityProbe& a, const CapacityProbe& b) { return a.rate < b.rate; });
  std::string out = fmt::format("\ncapacity of {} (goodput >= {:.0f}% of requests within the SLO)\n", result.target, options.goodput * 100);
  out += fmt::format("  {:>10} {:>9} {:>8} {:>10} {:>10} {:>15} {:>15} {:>17}  {}\n", "rate req/s", "ok/all", "good", "req/s", "out tok/s",
                     "TTFT p50/p99", "ITL p50/p99", "E2E p50/p99 ms", "");
  for (const CapacityProbe& p : by_rate) {
    out += fmt::format("  {:>10.3g} {:>9} {:>7.1f}% {:>10.2f} {:>10.1f} {:>15} {:>15} {:>17}  {}\n", p.rate,
                       fmt::format("{}/{}", p.num_ok, p.num_requests), p.good_fraction * 100, p.request_throughput,
                       p.output_token_throughput, fmt::format("{:.1f} / {:.1f}", p.ttft_ms.p50, p.ttft_ms.p99),
                       fmt::format("{:.1f} / {:.1f}", p.itl_ms.p50, p.itl_ms.p99), fmt::format("{:.1f} / {:.1f}", p.e2e_ms.p50, p.e2e_ms.p99),
                       p.passed ? "pass" : "FAIL");
  }
  if (result.max_rate <= 0) {
    out += "  no rate tried met the SLO";
    out += result.probes.empty() ? "\n" : fmt::format(" (the lowest was {:.3g} req/s)\n", by_rate.front().rate);
  } else if (!result.is_bounded) {
    out += fmt::format("  max rate within the SLO: at least {:.3g} req/s (every rate tried passed; raise --max-probes or the start rate)\n",
                       result.max_rate);
  } else {
    out += fmt::format("  max rate within the SLO: {:.3g} req/s\n", result.max_rate);
  }
  if (result.is_interrupted) out += "  interrupted: the search stopped early\n";
  return out;
}

}  // namespace tern::bench
