#include "bench/stats.h"

#include <algorithm>
#include <cmath>

namespace tern::bench {

double percentile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lower = static_cast<size_t>(std::floor(rank));
  const size_t upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

Summary summarize(std::vector<double> values) {
  Summary summary;
  if (values.empty()) return summary;
  std::sort(values.begin(), values.end());
  summary.count = values.size();
  double sum = 0;
  for (double value : values) sum += value;
  summary.mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (double value : values) squares += (value - summary.mean) * (value - summary.mean);
  summary.stdev = std::sqrt(squares / static_cast<double>(values.size()));
  summary.min = values.front();
  summary.max = values.back();
  summary.p50 = percentile_sorted(values, 50);
  summary.p90 = percentile_sorted(values, 90);
  summary.p95 = percentile_sorted(values, 95);
  summary.p99 = percentile_sorted(values, 99);
  summary.p999 = percentile_sorted(values, 99.9);
  return summary;
}

}  // namespace tern::bench
