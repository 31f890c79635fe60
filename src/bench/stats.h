#pragma once
// Summary statistics over a sample of measurements (latencies, token counts). Percentiles use linear
// interpolation between closest ranks (numpy's default, "linear"), so figures match what a reader
// computing them in Python from the same raw samples would get.

#include <cstddef>
#include <vector>

namespace tern::bench {

/// Distribution summary of one metric. Empty sample: count 0 and every field 0.
struct Summary {
  size_t count = 0;
  double mean = 0;
  double stdev = 0;  ///< population standard deviation
  double min = 0;
  double max = 0;
  double p50 = 0;
  double p90 = 0;
  double p95 = 0;
  double p99 = 0;
  double p999 = 0;
};

/// Percentile `q` in [0, 100] of an ascending-sorted sample (numpy "linear"); 0 for an empty sample.
double percentile_sorted(const std::vector<double>& sorted, double q);

/// Sorts a copy of `values` and summarises it.
Summary summarize(std::vector<double> values);

}  // namespace tern::bench
