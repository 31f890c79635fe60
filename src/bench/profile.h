#pragma once
// `tern bench profile`: from a request log to a workload file that `tern bench` replays. The log format
// (one JSON object per line, docs/bench.md "Request log") is what `tern serve --request-log` writes; any gateway can
// produce it from its own logs.
//
//   {"timestamp": 1764230400.125, "model": "llama-3-8b", "adapter": "support-v2", "prompt_tokens": 812,
//    "completion_tokens": 120, "cached_tokens": 512, "prefix_hash": "9f2c", "session_id": "c41"}
//
// Only timestamp, prompt_tokens and completion_tokens are required.

#include <string>

#include <nlohmann/json.hpp>

#include "bench/workload.h"
#include "util/result.h"

namespace tern::bench {

struct ProfileOptions {
  double bucket_s = 0;       ///< QPS bucket width; 0 = span / 24 (at least 1 s)
  bool is_flat = false;      ///< one stage at the mean rate instead of one per bucket
  bool is_empirical = false; ///< token lengths drawn from the log itself instead of a lognormal fit
};

/// The derived workload and, under "profile", what it was derived from (percentiles, QPS series, reuse).
/// `log_path` is recorded for empirical distributions, which read the log at replay time.
Result<nlohmann::json> profile_log(const std::string& log_path, const ProfileOptions& options);

}  // namespace tern::bench
