#pragma once
// A thin RAII layer over SQLite's C API (Debian's libsqlite3): a connection and prepared statements
// whose failures come back as Result values naming the database file and the statement. Used by the
// key store (tenants/) and the SQLite ledger (metering/).

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/result.h"

namespace tern::sqlite {

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3_stmt* stmt, std::string where) : stmt_(stmt, &sqlite3_finalize), where_(std::move(where)) {}

  Statement& bind(int index, int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view value);
  /// Runs one step: true while a row is available, false when done.
  Result<bool> step();
  /// Runs to completion, ignoring rows.
  Result<void> run();
  void reset();

  int64_t integer(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  double real(int column) const { return sqlite3_column_double(stmt_.get(), column); }
  std::string text(int column) const;

 private:
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt_{nullptr, &sqlite3_finalize};
  std::string where_;
};

class Database {
 public:
  /// Opens (creating) a database in WAL mode with a busy timeout, so that a server and `tern keys`
  /// or `tern usage` may use the same file at once. synchronous=NORMAL: a committed transaction
  /// survives the process being killed (it is in the WAL); only a power loss may take the last ones.
  static Result<Database> open(const std::string& path, bool read_only = false);

  Result<void> exec(const std::string& sql);
  Result<Statement> prepare(const std::string& sql);
  int64_t changes() const { return sqlite3_changes64(db_.get()); }
  /// Changes to the file by other connections since this one last looked (PRAGMA data_version).
  int64_t data_version();
  const std::string& path() const { return path_; }

 private:
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db_{nullptr, &sqlite3_close_v2};
  std::string path_;
};

/// Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back if it fails.
template <class Body>
Result<void> transaction(Database& db, Body&& body) {
  if (auto begun = db.exec("BEGIN IMMEDIATE"); !begun) return begun;
  Result<void> result = body();
  if (!result) {
    (void)db.exec("ROLLBACK");
    return result;
  }
  if (auto committed = db.exec("COMMIT"); !committed) {
    (void)db.exec("ROLLBACK");
    return committed;
  }
  return {};
}

}  // namespace tern::sqlite
