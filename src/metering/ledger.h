#pragma once
// The cost ledger: one row per generation request (who asked, what answered, tokens, cost, timing,
// outcome), in SQLite by default ($TERN_HOME/ledger.db, WAL) or PostgreSQL (`--ledger
// postgresql://...`). Spend queries and budgets read it back; retention deletes old rows in small
// batches. Rows are written by LedgerWriter's thread, never on a request's path (ledger_writer.h).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace tern::metering {

struct LedgerRow {
  int64_t time_ms = 0;  ///< when the request arrived, Unix milliseconds
  std::string request_id;
  std::string key_id;  ///< empty when the server runs without keys
  std::string org;
  std::string model;       ///< the public name asked for
  std::string deployment;  ///< the deployment that answered (empty if none did)
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t cache_write_tokens = 0;
  int64_t completion_tokens = 0;
  double cost_usd = 0;
  double ttft_ms = 0;  ///< 0 when no token was produced
  double e2e_ms = 0;
  int status = 200;  ///< HTTP status the client got (499: the client left first)
  std::string finish_reason;
};

enum class GroupBy { kNone, kKey, kOrg, kModel, kDeployment, kDay };
Result<GroupBy> parse_group_by(const std::string& text);  ///< "key", "org", "model", "deployment", "day" or ""
const char* group_by_name(GroupBy group_by);

struct UsageQuery {
  int64_t from_ms = 0;           ///< inclusive
  int64_t to_ms = INT64_MAX;     ///< exclusive
  std::string key_id;            ///< only this key's rows, if set
  GroupBy group_by = GroupBy::kNone;
};

struct UsageTotals {
  std::string group;  ///< the key id, org, model, deployment or day (YYYY-MM-DD); empty with kNone
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t cache_write_tokens = 0;
  int64_t completion_tokens = 0;
  double cost_usd = 0;
};

/// A ledger database. Writes come from one thread (LedgerWriter); queries may come from others.
class LedgerStore {
 public:
  virtual ~LedgerStore() = default;
  /// Appends rows in one transaction: all or none.
  virtual Result<void> append(std::span<const LedgerRow> rows) = 0;
  /// Totals per group over [from, to), largest cost first.
  virtual Result<std::vector<UsageTotals>> usage(const UsageQuery& query) = 0;
  /// Deletes up to `max_rows` rows older than `before_ms` (oldest first); how many went.
  virtual Result<int64_t> delete_before(int64_t before_ms, int64_t max_rows) = 0;
  /// "sqlite:/path" or "postgresql://host/db" (no password), for logs.
  virtual std::string describe() const = 0;
};

/// Opens (creating the schema) a ledger: a postgresql:// or postgres:// URL, else a SQLite file path.
Result<std::unique_ptr<LedgerStore>> open_ledger(const std::string& location);
Result<std::unique_ptr<LedgerStore>> open_sqlite_ledger(const std::string& path);
Result<std::unique_ptr<LedgerStore>> open_postgres_ledger(const std::string& url);

/// The default ledger file: $TERN_HOME/ledger.db.
std::string default_ledger_path();
/// Whether `location` names a PostgreSQL database rather than a file.
bool is_postgres_url(const std::string& location);

/// "2026-11-29" for a time in Unix milliseconds (UTC).
std::string utc_day(int64_t time_ms);

}  // namespace tern::metering
