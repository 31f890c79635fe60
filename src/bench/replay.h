#pragma once
// A request log (`tern serve --request-log`, or any gateway's log in the same JSONL shape: docs/bench.md
// "Request log") read for `tern bench profile`, and replayed as it happened by `tern bench --replay`:
// each logged request sent at its own arrival time (divided by --speedup), with its prompt and output
// lengths, requests that shared a system prompt (prefix_hash) sharing a prefix of the length the
// server found cached for them.

#include <memory>
#include <string>
#include <vector>

#include "util/result.h"

namespace tern::bench {

struct LoggedRequest {
  double timestamp = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = -1;  ///< cached: -1 when not logged
  std::string model, prefix_hash, session_id;
};

/// The log's requests with a shape to replay, by arrival time (refusals that never reached a model are
/// left out). Needs timestamp, prompt_tokens and completion_tokens on every line; the error names the
/// line. At least 2 requests.
Result<std::vector<LoggedRequest>> read_request_log(const std::string& path);

/// What a replay sends.
struct ReplayedRequest {
  double offset_s = 0;     ///< from the log's first request
  int prompt_tokens = 1;   ///< the whole prompt, its prefix included
  int output_tokens = 1;   ///< max_tokens: what the logged request produced
  int prefix_group = -1;   ///< requests of one prefix_hash; -1: none (or none the server had cached)
  std::string model;       ///< as logged (the adapter's name for a LoRA adapter)
};

struct ReplayTrace {
  std::string path;
  std::vector<ReplayedRequest> requests;  ///< by offset
  std::vector<int> prefix_tokens;         ///< per prefix group: the least the server had cached of it
  double span_s = 0;                      ///< first to last arrival
};

/// The trace of a log. A prefix group's length is the least `cached_tokens` logged among its requests
/// (what the server demonstrably reused; never the whole of any prompt); groups with none cached get no
/// prefix.
Result<std::shared_ptr<const ReplayTrace>> load_replay(const std::string& path);

}  // namespace tern::bench
