#include "metering/ledger_sql.h"

#include <fmt/format.h>

namespace tern::metering {
namespace {

std::string placeholder(Dialect dialect, int n) { return dialect == Dialect::kSqlite ? fmt::format("?{}", n) : fmt::format("${}", n); }

}  // namespace

std::string schema_sql(Dialect dialect) {
  const char* id = dialect == Dialect::kSqlite ? "id INTEGER PRIMARY KEY" : "id BIGSERIAL PRIMARY KEY";
  const char* real = dialect == Dialect::kSqlite ? "REAL" : "DOUBLE PRECISION";
  const char* integer = dialect == Dialect::kSqlite ? "INTEGER" : "BIGINT";
  return fmt::format(
      "CREATE TABLE IF NOT EXISTS requests ("
      " {0}, ts_ms {2} NOT NULL, request_id TEXT NOT NULL, key_id TEXT NOT NULL, org TEXT NOT NULL,"
      " model TEXT NOT NULL, deployment TEXT NOT NULL, prompt_tokens {2} NOT NULL, cached_tokens {2} NOT NULL,"
      " cache_write_tokens {2} NOT NULL, completion_tokens {2} NOT NULL, cost_usd {1} NOT NULL, ttft_ms {1} NOT NULL,"
      " e2e_ms {1} NOT NULL, status {2} NOT NULL, finish_reason TEXT NOT NULL);"
      // One key's spend over a period, also by model or deployment: a range scan of this index alone
      // (the grouped and summed columns ride along).
      "DROP INDEX IF EXISTS requests_by_key;"  // its first version, without model and deployment
      "CREATE INDEX IF NOT EXISTS requests_by_key_v2 ON requests (key_id, ts_ms, model, deployment, cost_usd, prompt_tokens,"
      " cached_tokens, cache_write_tokens, completion_tokens);"
      "CREATE INDEX IF NOT EXISTS requests_by_time ON requests (ts_ms);",
      id, real, integer);
}

std::string insert_sql(Dialect dialect) {
  std::string values;
  for (int i = 1; i <= 15; ++i) {
    if (i > 1) values += ',';
    values += placeholder(dialect, i);
  }
  return "INSERT INTO requests (ts_ms, request_id, key_id, org, model, deployment, prompt_tokens, cached_tokens,"
         " cache_write_tokens, completion_tokens, cost_usd, ttft_ms, e2e_ms, status, finish_reason) VALUES (" + values + ")";
}

std::string usage_sql(const UsageQuery& query, Dialect dialect) {
  std::string group;
  switch (query.group_by) {
    case GroupBy::kNone: group = "''"; break;
    case GroupBy::kKey: group = "key_id"; break;
    case GroupBy::kOrg: group = "org"; break;
    case GroupBy::kModel: group = "model"; break;
    case GroupBy::kDeployment: group = "deployment"; break;
    case GroupBy::kDay: group = "(ts_ms / 86400000)"; break;
  }
  std::string where = fmt::format("ts_ms >= {} AND ts_ms < {}", placeholder(dialect, 1), placeholder(dialect, 2));
  if (!query.key_id.empty()) where = fmt::format("key_id = {} AND ", placeholder(dialect, 3)) + where;
  const char* total_type = dialect == Dialect::kSqlite ? "" : "::BIGINT";
  return fmt::format(
      "SELECT {0}, COUNT(*){2}, COALESCE(SUM(prompt_tokens), 0){2}, COALESCE(SUM(cached_tokens), 0){2},"
      " COALESCE(SUM(cache_write_tokens), 0){2}, COALESCE(SUM(completion_tokens), 0){2}, COALESCE(SUM(cost_usd), 0)"
      " FROM requests WHERE {1}{3} ORDER BY 7 DESC",
      group, where, total_type, query.group_by == GroupBy::kNone ? "" : " GROUP BY " + group);
}

}  // namespace tern::metering
