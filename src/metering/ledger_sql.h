#pragma once
// The ledger's SQL, shared by the SQLite and PostgreSQL stores (they differ in a few types and in
// placeholder syntax only).

#include <string>

#include "metering/ledger.h"

namespace tern::metering {

enum class Dialect { kSqlite, kPostgres };

/// CREATE TABLE / INDEX IF NOT EXISTS for the `requests` table.
std::string schema_sql(Dialect dialect);
/// INSERT of one row, 15 placeholders in LedgerRow's order.
std::string insert_sql(Dialect dialect);
/// Totals over [?1, ?2) (and key_id = ?3 when the query names a key), grouped, largest cost first.
/// Columns: group, requests, prompt, cached, cache_write, completion, cost; a day is a day number.
std::string usage_sql(const UsageQuery& query, Dialect dialect);

}  // namespace tern::metering
