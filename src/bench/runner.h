#pragma once
// The load generator: replays a Plan against one or more targets on one thread, and records what every
// request saw. Each target gets the whole plan; sends to the targets are interleaved (for each arrival,
// target A then target B, in the same event loop) so that side-by-side figures come from the same
// client, the same moment and the same prompts.
//
// Latency is counted from each request's *scheduled* send time, not from when the client got around to
// sending it: if the client (or a full connection pool) delays a send, that delay is in the latency and is
// also reported on its own as queue delay. This avoids coordinated omission.
//   open loop:   scheduled = stage start + planned arrival offset
//   closed loop: scheduled = the moment the previous request of that worker finished
//   later turns: scheduled = previous turn's end + think time

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "http/client.h"
#include "bench/api.h"
#include "bench/plan.h"
#include "bench/workload.h"
#include "util/result.h"

namespace tern::bench {

// The HTTP client and its clock are shared with the gateway (src/http/).
using http::Clock;
using http::ErrorKind;
using http::error_kind_name;
using http::HttpStreamClient;
using http::StreamCallbacks;

/// What one request saw. Times are nanoseconds since the run's start; -1 = never happened.
struct RequestRecord {
  size_t target = 0;
  size_t stage = 0;
  size_t session = 0;
  size_t turn = 0;
  std::string model;
  int prefix_group = -1;
  int max_tokens = 0;
  /// Client-side token count of everything the prompt's messages hold (prefix, history, new text), without
  /// chat-template tokens; the history's answers are counted after the run.
  int64_t client_prompt_tokens = 0;
  int64_t client_output_tokens = -1;  ///< client tokenizer on the streamed text, after the run
  int64_t scheduled_ns = -1;
  int64_t dispatched_ns = -1;   ///< got a connection slot and started sending
  int64_t first_token_ns = -1;  ///< first chunk carrying generated text
  int64_t end_ns = -1;          ///< response complete (or failed)
  std::vector<int64_t> chunk_ns;           ///< arrival of each chunk that carried text
  std::vector<uint32_t> chunk_text_bytes;  ///< its text length
  std::string output_text;
  wire::UsageReport usage;  ///< as the server reported it (-1: not reported)
  ErrorKind error = ErrorKind::kNone;
  int http_status = 0;
  std::string error_detail;
  bool saw_done = false;
  /// SSE payloads as they arrived, parsed into the fields above by finalize_record (then emptied).
  std::vector<std::string> raw_events;
  std::vector<int64_t> raw_event_ns;
  bool is_finalized = false;

  bool is_ok() const { return error == ErrorKind::kNone; }
};

struct StageTiming {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

struct RunResult {
  int64_t epoch_steady_ns = 0;  ///< the run's time 0, as steady_clock nanoseconds since its own epoch
  std::vector<RequestRecord> records;
  std::vector<StageTiming> stages;  ///< the stages that started
  bool interrupted = false;         ///< stopped early by a signal (RunOptions::stop_on_signals)
};

struct RunProgress {
  size_t stage = 0, num_stages = 0;
  std::string stage_label;
  size_t num_planned = 0;     ///< requests of this stage over all targets, at most (0: open-ended, a duration ends it)
  size_t num_finished = 0;    ///< of this stage, ok or not
  size_t num_failed = 0;      ///< of this stage
  size_t num_in_flight = 0;
  size_t num_queued = 0;      ///< waiting for a connection
  uint64_t num_chunks = 0;    ///< SSE events received in this stage
  double stage_elapsed_s = 0;
  double stage_duration_s = 0;  ///< the stage's duration, if it has one (0: none)
};

struct RunOptions {
  std::chrono::milliseconds timeout{600'000};
  RequestBodyOptions body;  ///< max_tokens is set per request
  std::chrono::milliseconds progress_interval{250};
  std::function<void(const RunProgress&)> on_progress;
  /// SIGINT / SIGTERM stop the run early: nothing new is sent, requests in flight finish, and the result
  /// covers what was measured (marked interrupted). A second signal exits the process at once.
  bool stop_on_signals = false;
};

/// Runs every stage of `plan` against every target, one stage after the other. Fails only for set-up
/// problems (a target URL that does not parse or resolve); request failures are recorded, not returned.
Result<RunResult> run_benchmark(Plan& plan, const std::vector<TargetSpec>& targets, const RunOptions& options);

/// The same plan against each target in turn, alone (two servers sharing this machine's cores must not
/// be loaded at the same moment); one result, as if side by side: every target's records are moved in
/// time so that its stages start where the first target's did. `on_target` is called before each.
Result<RunResult> run_benchmark_sequential(Plan& plan, const std::vector<TargetSpec>& targets,
                                           const RunOptions& options, const std::function<void(size_t)>& on_target = {});

/// Parses a record's raw SSE payloads into its text, chunk times, usage and errors (run_benchmark does this
/// for every record before returning). `cache_retention`: what the request asked for, which says how long
/// its cache writes are kept where the API's usage does not (OpenAI's).
void finalize_record(RequestRecord& record, ApiKind api, std::string_view cache_retention = {});

/// Fills client_output_tokens (tokenizer on the streamed text) and adds the history's answers to
/// client_prompt_tokens of later turns. Runs after the run so that tokenizing stays off the event loop.
void count_client_tokens(RunResult& result, const PromptBuilder& builder);

}  // namespace tern::bench
