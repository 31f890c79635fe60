#pragma once
// Writes ledger rows off the request path: append() queues a row and returns; one writer thread
// takes everything queued and commits it in one transaction (group commit), then calls each row's
// `on_durable`. The gateway sends a response's last bytes from that callback, so a client that
// received a whole response has its row on disk even if the process is killed right after; the wait
// is one commit (SQLite WAL without fsync: tens of microseconds per batch), not one per request.
//
// A store that keeps failing does not lose rows: after a few retries they are appended as JSON lines
// to a spill file beside the ledger (ledger-spill.jsonl), the error is logged and counted, and the
// callbacks run so that clients are not held hostage by a broken disk.
// Retention: between batches, rows older than `retention_days` are deleted a few thousand at a time,
// so writers are never blocked for long.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metering/ledger.h"

namespace tern::metering {

struct LedgerWriterOptions {
  int64_t retention_days = 0;       ///< 0: keep everything
  size_t max_batch_rows = 8192;     ///< rows per transaction
  int64_t retention_batch_rows = 1000;  ///< rows per delete: a writer waits behind at most one
  std::string spill_path;           ///< where rows go if the store keeps failing (default: none, logged only)
};

struct LedgerStats {
  int64_t rows_written = 0;
  int64_t batches = 0;
  int64_t write_errors = 0;
  int64_t rows_spilled = 0;
  int64_t rows_deleted = 0;
  int64_t queued = 0;
  double last_commit_seconds = 0;
};

class LedgerWriter {
 public:
  LedgerWriter(std::unique_ptr<LedgerStore> store, LedgerWriterOptions options);
  ~LedgerWriter();  ///< writes what is queued, then stops
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  /// Queues a row; `on_durable` (may be empty) runs on the writer thread once it is committed.
  void append(LedgerRow row, std::function<void()> on_durable = {});
  /// Blocks until every row appended before the call is committed (or spilled).
  void flush();
  /// At shutdown, before the HTTP server goes: commits what is queued and runs what callbacks and
  /// queries are pending, then drops every later callback and query (rows appended later are still
  /// written). After this nothing calls back into connections that are about to disappear.
  void close_callbacks();
  LedgerStats stats() const;
  LedgerStore& store() { return *store_; }

  /// Runs `work` on a query thread (not the writer's, not the caller's): spend queries from HTTP
  /// handlers must not block an I/O thread. Dropped after close_callbacks().
  void run_query(std::function<void()> work);

 private:
  struct Pending {
    LedgerRow row;
    std::function<void()> on_durable;
  };
  void write_loop();
  void query_loop();
  void commit(std::vector<Pending>& batch);
  void apply_retention();

  std::unique_ptr<LedgerStore> store_;
  LedgerWriterOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable flushed_;
  std::vector<Pending> queue_;
  int64_t appended_ = 0;   // rows ever appended (under mutex_)
  int64_t completed_ = 0;  // rows ever committed or spilled (under mutex_)
  bool stopping_ = false;
  bool callbacks_closed_ = false;  // under mutex_
  LedgerStats stats_;      // under mutex_
  int64_t next_retention_ms_ = 0;

  std::mutex query_mutex_;
  std::condition_variable query_wake_;
  std::condition_variable query_idle_;
  std::deque<std::function<void()>> queries_;
  bool query_running_ = false;
  bool queries_closed_ = false;

  std::thread writer_;
  std::thread querier_;
};

}  // namespace tern::metering
