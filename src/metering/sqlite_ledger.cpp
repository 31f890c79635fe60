// The default ledger: one SQLite file in WAL mode. Two connections — the writer thread's and one for
// queries — so that a spend query never waits on a batch being written (WAL readers see the last
// commit). Indexes: (key_id, ts_ms) with the grouped and summed columns included, so one key's month
// is an index range scan without touching the table; (ts_ms) for retention and all-key reports.
//
// Checkpoints (copying the WAL back into the database file, with two fsyncs) run on a thread of their
// own, not in the writer's commit as SQLite's auto-checkpoint would: a commit is then a write to the
// WAL, never a wait on the disk, and the responses held for it are not held for an fsync.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "metering/ledger.h"
#include "metering/ledger_sql.h"
#include "util/sqlite.h"

namespace tern::metering {
namespace {

class SqliteLedger final : public LedgerStore {
 public:
  SqliteLedger(sqlite::Database writer, sqlite::Database reader, sqlite::Database checkpointer, sqlite::Statement insert)
      : writer_(std::move(writer)), reader_(std::move(reader)), checkpointer_(std::move(checkpointer)), insert_(std::move(insert)) {
    checkpoints_ = std::jthread([this](std::stop_token stop) { checkpoint_loop(stop); });
  }

  ~SqliteLedger() override {
    checkpoints_.request_stop();
    checkpoints_.join();
  }

  Result<void> append(std::span<const LedgerRow> rows) override {
    std::lock_guard lock(write_mutex_);
    return sqlite::transaction(writer_, [&]() -> Result<void> {
      for (const LedgerRow& r : rows) {
        insert_.bind(1, r.time_ms).bind(2, r.request_id).bind(3, r.key_id).bind(4, r.org).bind(5, r.model).bind(6, r.deployment);
        insert_.bind(7, r.prompt_tokens).bind(8, r.cached_tokens).bind(9, r.cache_write_tokens).bind(10, r.completion_tokens);
        insert_.bind(11, r.cost_usd).bind(12, r.ttft_ms).bind(13, r.e2e_ms).bind(14, int64_t{r.status}).bind(15, r.finish_reason);
        if (auto ok = insert_.run(); !ok) return ok;
      }
      return {};
    });
  }

  Result<std::vector<UsageTotals>> usage(const UsageQuery& query) override {
    std::lock_guard lock(read_mutex_);
    auto stmt = reader_.prepare(usage_sql(query, Dialect::kSqlite));
    if (!stmt) return std::unexpected(stmt.error());
    stmt->bind(1, query.from_ms).bind(2, query.to_ms);
    if (!query.key_id.empty()) stmt->bind(3, query.key_id);
    std::vector<UsageTotals> out;
    for (;;) {
      auto row = stmt->step();
      if (!row) return std::unexpected(row.error());
      if (!*row) break;
      UsageTotals t;
      t.group = query.group_by == GroupBy::kDay ? utc_day(stmt->integer(0) * 86'400'000) : stmt->text(0);
      t.requests = stmt->integer(1);
      t.prompt_tokens = stmt->integer(2);
      t.cached_tokens = stmt->integer(3);
      t.cache_write_tokens = stmt->integer(4);
      t.completion_tokens = stmt->integer(5);
      t.cost_usd = stmt->real(6);
      if (t.requests > 0) out.push_back(std::move(t));
    }
    return out;
  }

  Result<int64_t> delete_before(int64_t before_ms, int64_t max_rows) override {
    std::lock_guard lock(write_mutex_);
    auto stmt = writer_.prepare(
        "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->bind(1, before_ms).bind(2, max_rows);
    if (auto ok = stmt->run(); !ok) return std::unexpected(ok.error());
    return writer_.changes();
  }

  std::string describe() const override { return "sqlite:" + writer_.path(); }

 private:
  /// Every second, a passive checkpoint (it never blocks the writer or readers). Under steady writes a
  /// passive checkpoint may never catch up with the WAL's end, so the WAL could only grow: past 64 MiB
  /// a RESTART checkpoint waits for a gap between the writer's transactions and rewinds it.
  void checkpoint_loop(std::stop_token stop) {
    std::mutex mutex;
    std::unique_lock lock(mutex);
    const std::string wal = writer_.path() + "-wal";
    while (!stop.stop_requested()) {
      stop_wake_.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; });  // wakes early on stop
      if (stop.stop_requested()) break;
      std::error_code ec;
      const bool large = std::filesystem::file_size(wal, ec) > kWalRestartBytes && !ec;
      if (auto ok = checkpointer_.exec(large ? "PRAGMA wal_checkpoint(RESTART)" : "PRAGMA wal_checkpoint(PASSIVE)"); !ok) {
        std::fprintf(stderr, "tern: ledger: checkpoint: %s\n", ok.error().message.c_str());
      }
    }
  }

  static constexpr uintmax_t kWalRestartBytes = uintmax_t{64} << 20;

  std::mutex write_mutex_;
  std::mutex read_mutex_;
  sqlite::Database writer_;
  sqlite::Database reader_;
  sqlite::Database checkpointer_;
  sqlite::Statement insert_;
  std::condition_variable_any stop_wake_;
  std::jthread checkpoints_;
};

}  // namespace

Result<std::unique_ptr<LedgerStore>> open_sqlite_ledger(const std::string& path) {
  auto writer = sqlite::Database::open(path);
  if (!writer) return with_context("ledger", writer.error());
  if (auto ok = writer->exec(schema_sql(Dialect::kSqlite)); !ok) return with_context("ledger: creating the schema", ok.error());
  auto reader = sqlite::Database::open(path);
  if (!reader) return with_context("ledger", reader.error());
  auto checkpointer = sqlite::Database::open(path);
  if (!checkpointer) return with_context("ledger", checkpointer.error());
  // journal_size_limit: after a checkpoint rewinds the WAL, its file is truncated back to 64 MiB.
  if (auto ok = writer->exec("PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864"); !ok) return with_context("ledger", ok.error());
  auto insert = writer->prepare(insert_sql(Dialect::kSqlite));
  if (!insert) return with_context("ledger", insert.error());
  return std::make_unique<SqliteLedger>(std::move(*writer), std::move(*reader), std::move(*checkpointer), std::move(*insert));
}

}  // namespace tern::metering
