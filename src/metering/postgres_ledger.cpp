// The ledger in PostgreSQL (libpq from Debian), for deployments whose spend logs outgrow one file or
// that already run PostgreSQL. Batches go in with COPY ... FROM STDIN inside one transaction (one
// round trip per batch, not per row); queries use a second connection so they never wait on a batch.

#include <libpq-fe.h>

#include <cstdlib>
#include <mutex>

#include "metering/ledger.h"
#include "metering/ledger_sql.h"

namespace tern::metering {
namespace {

using Connection = std::unique_ptr<PGconn, void (*)(PGconn*)>;
using PgResult = std::unique_ptr<PGresult, void (*)(PGresult*)>;

PgResult wrap(PGresult* result) { return PgResult(result, &PQclear); }

/// The URL without its password, for messages and logs.
std::string redact(std::string url) {
  // user:password@host
  if (const size_t scheme = url.find("://"); scheme != std::string::npos) {
    const size_t at = url.find('@', scheme + 3);
    const size_t colon = url.find(':', scheme + 3);
    const size_t slash = url.find('/', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at && (slash == std::string::npos || at < slash)) {
      url.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // ...?password=...&
  for (size_t pos = url.find("password="); pos != std::string::npos; pos = url.find("password=", pos + 1)) {
    if (pos == 0 || (url[pos - 1] != '?' && url[pos - 1] != '&')) continue;
    const size_t start = pos + 9;
    const size_t end = std::min(url.find('&', start), url.size());
    url.replace(start, end - start, "***");
  }
  return url;
}

Result<void> check(PGconn* conn, const PgResult& result, const char* what) {
  const ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_COPY_IN) return {};
  return fail("postgresql: {}: {}", what, PQerrorMessage(conn));
}

Result<Connection> connect(const std::string& url) {
  Connection conn(PQconnectdb(url.c_str()), &PQfinish);
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    return fail("postgresql: cannot connect to {}: {}", redact(url), conn ? PQerrorMessage(conn.get()) : "out of memory");
  }
  return conn;
}

/// COPY's text format: backslash, tab, newline and carriage return escaped.
void append_copy_text(std::string& out, const std::string& value) {
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
}

class PostgresLedger final : public LedgerStore {
 public:
  PostgresLedger(Connection writer, Connection reader, std::string url)
      : writer_(std::move(writer)), reader_(std::move(reader)), url_(std::move(url)) {}

  Result<void> append(std::span<const LedgerRow> rows) override {
    std::lock_guard lock(write_mutex_);
    if (auto ok = reconnect_if_needed(writer_); !ok) return ok;
    PGconn* conn = writer_.get();
    if (auto ok = check(conn, wrap(PQexec(conn, "BEGIN")), "BEGIN"); !ok) return ok;
    auto abort = [&](Result<void> error) {
      wrap(PQexec(conn, "ROLLBACK"));
      return error;
    };
    if (auto ok = check(conn, wrap(PQexec(conn, "COPY requests (ts_ms, request_id, key_id, org, model, deployment, prompt_tokens,"
                                                " cached_tokens, cache_write_tokens, completion_tokens, cost_usd, ttft_ms, e2e_ms,"
                                                " status, finish_reason) FROM STDIN")),
                        "COPY");
        !ok) {
      return abort(ok);
    }
    std::string data;
    data.reserve(rows.size() * 160);
    for (const LedgerRow& r : rows) {
      data += fmt::format("{}\t", r.time_ms);
      for (const std::string* text : {&r.request_id, &r.key_id, &r.org, &r.model, &r.deployment}) {
        append_copy_text(data, *text);
        data += '\t';
      }
      data += fmt::format("{}\t{}\t{}\t{}\t{:.17g}\t{:.6f}\t{:.6f}\t{}\t", r.prompt_tokens, r.cached_tokens, r.cache_write_tokens,
                          r.completion_tokens, r.cost_usd, r.ttft_ms, r.e2e_ms, r.status);
      append_copy_text(data, r.finish_reason);
      data += '\n';
    }
    if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 || PQputCopyEnd(conn, nullptr) != 1) {
      return abort(fail("postgresql: COPY: {}", PQerrorMessage(conn)));
    }
    if (auto ok = check(conn, wrap(PQgetResult(conn)), "COPY"); !ok) return abort(ok);
    while (PGresult* extra = PQgetResult(conn)) PQclear(extra);
    return check(conn, wrap(PQexec(conn, "COMMIT")), "COMMIT");
  }

  Result<std::vector<UsageTotals>> usage(const UsageQuery& query) override {
    std::lock_guard lock(read_mutex_);
    if (auto ok = reconnect_if_needed(reader_); !ok) return std::unexpected(ok.error());
    const std::string sql = usage_sql(query, Dialect::kPostgres);
    const std::string from = std::to_string(query.from_ms);
    const std::string to = std::to_string(query.to_ms);
    const char* params[] = {from.c_str(), to.c_str(), query.key_id.c_str()};
    const int num_params = query.key_id.empty() ? 2 : 3;
    PgResult result = wrap(PQexecParams(reader_.get(), sql.c_str(), num_params, nullptr, params, nullptr, nullptr, 0));
    if (auto ok = check(reader_.get(), result, "usage query"); !ok) return std::unexpected(ok.error());
    std::vector<UsageTotals> out;
    for (int i = 0; i < PQntuples(result.get()); ++i) {
      auto value = [&](int column) { return std::string(PQgetvalue(result.get(), i, column)); };
      UsageTotals t;
      t.group = query.group_by == GroupBy::kDay ? utc_day(std::strtoll(value(0).c_str(), nullptr, 10) * 86'400'000) : value(0);
      t.requests = std::strtoll(value(1).c_str(), nullptr, 10);
      t.prompt_tokens = std::strtoll(value(2).c_str(), nullptr, 10);
      t.cached_tokens = std::strtoll(value(3).c_str(), nullptr, 10);
      t.cache_write_tokens = std::strtoll(value(4).c_str(), nullptr, 10);
      t.completion_tokens = std::strtoll(value(5).c_str(), nullptr, 10);
      t.cost_usd = std::strtod(value(6).c_str(), nullptr);
      if (t.requests > 0) out.push_back(std::move(t));
    }
    return out;
  }

  Result<int64_t> delete_before(int64_t before_ms, int64_t max_rows) override {
    std::lock_guard lock(write_mutex_);
    if (auto ok = reconnect_if_needed(writer_); !ok) return std::unexpected(ok.error());
    const std::string before = std::to_string(before_ms);
    const std::string limit = std::to_string(max_rows);
    const char* params[] = {before.c_str(), limit.c_str()};
    PgResult result = wrap(PQexecParams(writer_.get(),
                                        "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)",
                                        2, nullptr, params, nullptr, nullptr, 0));
    if (auto ok = check(writer_.get(), result, "retention"); !ok) return std::unexpected(ok.error());
    return std::strtoll(PQcmdTuples(result.get()), nullptr, 10);
  }

  std::string describe() const override { return redact(url_); }

 private:
  /// A server restart drops connections; the next batch reconnects instead of failing forever.
  Result<void> reconnect_if_needed(Connection& conn) {
    if (PQstatus(conn.get()) == CONNECTION_OK) return {};
    PQreset(conn.get());
    if (PQstatus(conn.get()) != CONNECTION_OK) return fail("postgresql: connection to {} lost: {}", redact(url_), PQerrorMessage(conn.get()));
    return {};
  }

  std::mutex write_mutex_;
  std::mutex read_mutex_;
  Connection writer_;
  Connection reader_;
  std::string url_;
};

}  // namespace

Result<std::unique_ptr<LedgerStore>> open_postgres_ledger(const std::string& url) {
  auto writer = connect(url);
  if (!writer) return std::unexpected(writer.error());
  // Quiet the NOTICEs of IF NOT EXISTS; concurrent servers creating the schema at once are fine.
  PQsetNoticeProcessor(writer->get(), [](void*, const char*) {}, nullptr);
  if (auto ok = check(writer->get(), wrap(PQexec(writer->get(), schema_sql(Dialect::kPostgres).c_str())), "creating the schema"); !ok) {
    return std::unexpected(ok.error());
  }
  auto reader = connect(url);
  if (!reader) return std::unexpected(reader.error());
  return std::make_unique<PostgresLedger>(std::move(*writer), std::move(*reader), url);
}

}  // namespace tern::metering
