#include "util/sqlite.h"

#include <filesystem>

namespace tern::sqlite {

Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_.get(), index, value);
  return *this;
}

Statement& Statement::bind(int index, double value) {
  sqlite3_bind_double(stmt_.get(), index, value);
  return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
  sqlite3_bind_text(stmt_.get(), index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

Result<bool> Statement::step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return fail("{}: {}", where_, sqlite3_errmsg(sqlite3_db_handle(stmt_.get())));
}

Result<void> Statement::run() {
  for (;;) {
    auto more = step();
    if (!more) {
      reset();
      return std::unexpected(more.error());
    }
    if (!*more) break;
  }
  reset();
  return {};
}

void Statement::reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

std::string Statement::text(int column) const {
  const auto* bytes = sqlite3_column_text(stmt_.get(), column);
  return bytes == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(bytes), static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), column)));
}

Result<Database> Database::open(const std::string& path, bool read_only) {
  if (!read_only) {
    std::error_code ignored;
    if (auto parent = std::filesystem::path(path).parent_path(); !parent.empty()) std::filesystem::create_directories(parent, ignored);
  }
  sqlite3* raw = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Database db;
  db.db_.reset(raw);
  db.path_ = path;
  if (rc != SQLITE_OK) return fail("{}: cannot open: {}", path, raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
  sqlite3_busy_timeout(raw, 10'000);
  if (!read_only) {
    if (auto ok = db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"); !ok) return std::unexpected(ok.error());
  }
  return db;
}

Result<void> Database::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message != nullptr ? message : "unknown error";
    sqlite3_free(message);
    return fail("{}: {}", path_, text);
  }
  return {};
}

Result<Statement> Database::prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_.get(), sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK) {
    return fail("{}: {}", path_, sqlite3_errmsg(db_.get()));
  }
  return Statement(stmt, path_);
}

int64_t Database::data_version() {
  auto stmt = prepare("PRAGMA data_version");
  if (!stmt) return -1;
  auto row = stmt->step();
  return row && *row ? stmt->integer(0) : -1;
}

}  // namespace tern::sqlite
