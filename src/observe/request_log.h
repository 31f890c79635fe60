#pragma once
// The request log (`tern serve --request-log FILE.jsonl`): one JSON line per request the gateway
// answered - ids, times, token counts, model and deployment, key and org, status, finish reason, cost -
// in the shape `tern bench profile` reads (docs/bench.md "Request log"), so production traffic can be
// profiled and replayed as a benchmark. Never the prompt or the output unless `log_content` is set.
//
// append() only queues (the gateway's I/O threads never format or write); one writer thread formats
// and writes what is queued in batches. Size-based rotation: past `max_bytes` the file becomes FILE.1
// (FILE.1 becomes FILE.2, ... up to `keep` old files; the oldest goes). A full queue (a stalled disk)
// drops lines and counts them rather than grow without bound or hold requests up.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "metering/ledger.h"
#include "util/result.h"

namespace tern::observe {

struct RequestLogOptions {
  std::string path;
  int64_t max_bytes = int64_t{256} << 20;  ///< rotate once the file would grow past this
  int keep = 5;                            ///< rotated files kept (FILE.1 ... FILE.keep); 0: none
  bool log_content = false;                ///< also the request's messages / prompt and the output text
  size_t max_queued = 65536;               ///< lines waiting to be written at most; more are dropped
};

/// One request, as the gateway saw it.
struct RequestLogEntry {
  metering::LedgerRow row;  ///< ids, key and org, model, deployment, tokens, cost, TTFT, E2E, status, finish
  double arrival_s = 0;     ///< Unix seconds, fractions included
  double queued_ms = -1;    ///< time before a local engine first computed it; < 0: not known (remote, refused)
  std::string prefix_hash;  ///< the system prompt's hash (empty: none), for `tern bench profile`'s prefix reuse
  std::string session_id;   ///< the client's x-session-id header, if any
  std::string adapter;      ///< the LoRA adapter that answered (empty: a base model)
  std::string region;       ///< the answering deployment's region label (empty: none)
  nlohmann::json request;   ///< with log_content: the request's messages or prompt (null otherwise)
  std::string output;       ///< with log_content: the text the client got
};

struct RequestLogStats {
  int64_t lines = 0;
  int64_t rotations = 0;
  int64_t dropped = 0;  ///< lines lost to a full queue
  int64_t errors = 0;   ///< failed writes or rotations (logged)
};

class RequestLog {
 public:
  /// Opens (appending to) the file now, so a bad path fails at start-up, and starts the writer.
  static Result<std::unique_ptr<RequestLog>> open(RequestLogOptions options);
  ~RequestLog();  ///< writes what is queued, then stops
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  /// Queues one line; never blocks on the disk.
  void append(RequestLogEntry entry);
  /// Blocks until every line appended before the call is written.
  void flush();
  RequestLogStats stats() const;
  const RequestLogOptions& options() const { return options_; }

  /// The JSON line of one entry (no newline), as written.
  static std::string format(const RequestLogEntry& entry, bool log_content);

 private:
  explicit RequestLog(RequestLogOptions options, std::FILE* file, int64_t size);
  void run();
  void write_line(const std::string& line);
  void rotate();

  RequestLogOptions options_;
  std::FILE* file_;
  int64_t size_;  // bytes in the current file

  mutable std::mutex mutex_;
  std::condition_variable wake_, written_;
  std::deque<RequestLogEntry> queue_;
  uint64_t appended_ = 0, done_ = 0;  // entries queued (or dropped) / written (or dropped), ever
  bool stopping_ = false;
  RequestLogStats stats_;
  std::thread thread_;
};

/// A short stable hash (16 hex digits) of text, for prefix_hash.
std::string short_hash(std::string_view text);

}  // namespace tern::observe
