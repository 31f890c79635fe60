#pragma once
// What a run produces for people and programs: the terminal summary, the JSON report (schema in
// docs/bench.md, "JSON report"; `schema_version` changes only when a field changes meaning or goes away),
// and a self-contained HTML report whose plots are inline SVG (no scripts, no network).

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/capacity.h"
#include "bench/metrics.h"
#include "bench/plan.h"
#include "bench/runner.h"
#include "bench/workload.h"

namespace tern::bench {

inline constexpr int kReportSchemaVersion = 1;

struct ReportInput {
  const Workload& workload;
  const Plan& plan;
  const std::vector<TargetSpec>& targets;
  const RunResult& result;
  const std::vector<Metrics>& metrics;
  std::string tokenizer;   ///< how client-side token counts were made
  std::string started_at;  ///< UTC, ISO 8601
  std::string machine;     ///< the client's CPU (client_machine())
};

/// "AMD EPYC 9B14, 2 cores": the machine the client ran on, for reports.
std::string client_machine();

/// The JSON report; with `include_requests`, one entry per request as well (large for long runs).
nlohmann::json report_json(const ReportInput& input, bool include_requests);
nlohmann::json summary_to_json(const Summary& summary);
/// The summary printed on the terminal after a run.
std::string report_text(const ReportInput& input);
/// A self-contained HTML page: tables, latency CDFs per stage, and sweep plots when there are stages.
std::string report_html(const ReportInput& input);
/// The capacity search's page: the answer per target, the curve (rate against share within the SLO,
/// throughput, p99 latencies), every probe, the workload and the client machine.
std::string capacity_html(const std::vector<CapacityResult>& results, const CapacityOptions& options, const Workload& workload,
                          const SloSpec& slo, const std::string& started_at, const std::string& machine);

}  // namespace tern::bench
