// The narrow SQL interface platform services store through (ARCHITECTURE.md: store/). Two
// engines implement it: SQLite, the embedded default under store.data_dir
// (store/sqlite_database.h), and PostgreSQL for several instances (to come).
//
// What a service may ask: one or more statements with bound parameters only (written `$1`,
// `$2`, ... in the SQL, the same for both engines; values never spliced into SQL text), run as
// one transaction, all or nothing, with results back on the caller's loop. A statement may say
// how many rows it must change (`expect_changes`): any other count rolls the whole transaction
// back with kConflict, which is how a service does compare-and-set ("mark this refresh token
// used unless it already is, then insert its successor") without holding a transaction open
// across its own code. Schemas are versioned migrations, applied once, in order, at open.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/event_loop.h"
#include "core/status.h"

namespace citadel::store {

struct SqlBlob {
  std::string bytes;
  bool operator==(const SqlBlob& o) const { return bytes == o.bytes; }
};
// NULL, INTEGER, REAL, TEXT, BLOB.
using SqlValue = std::variant<std::monostate, int64_t, double, std::string, SqlBlob>;

struct SqlStatement {
  std::string sql;
  std::vector<SqlValue> params;  // $1, $2, ...
  int64_t expect_changes = -1;   // >= 0: exactly this many rows changed, else kConflict
};

enum class SqlError : uint8_t {
  kNone,
  kConflict,     // an expect_changes guard failed, or a uniqueness constraint
  kInvalid,      // the SQL or its parameters are wrong (a programming error)
  kUnavailable,  // the engine cannot take the work now (queue full, closed, I/O failure)
};

struct SqlStatementResult {
  std::vector<std::string> columns;
  std::vector<std::vector<SqlValue>> rows;
  int64_t changes = 0;         // rows inserted, updated or deleted
  int64_t last_insert_id = 0;  // the rowid of the last insert (SQLite; 0 elsewhere)
};

struct SqlResult {
  SqlError error = SqlError::kNone;
  std::string message;  // what failed, naming the statement's index
  int failed_statement = -1;  // the index of the statement that failed, when one did
  std::vector<SqlStatementResult> statements;  // one per statement, when it succeeded
  bool ok() const { return error == SqlError::kNone; }
};

// One schema change: `version` increasing from 1, its SQL (several statements allowed).
struct SqlMigration {
  int version = 0;
  std::string sql;
};

class SqlDatabase {
 public:
  using Done = std::function<void(SqlResult&)>;
  virtual ~SqlDatabase() = default;

  // Runs `statements` as one transaction on the engine's own threads (never on `loop`); `done`
  // runs once on `loop`, also when the engine refuses at once (kUnavailable) or closes first.
  // `read_only`: the statements only read (any reader may take them; a write there fails).
  virtual void execute(core::EventLoop& loop, std::vector<SqlStatement> statements, Done done,
                       bool read_only = false) = 0;

  // The same, waiting for the result: for threads that may block (the control thread at start,
  // a command-line tool, the blocking pool), never a worker loop.
  virtual SqlResult execute_blocking(std::vector<SqlStatement> statements,
                                     bool read_only = false) = 0;

  // Applies `component`'s migrations not yet applied, in order, each in its own transaction
  // (recorded in `schema_migrations` under the component's name, so services version their
  // tables apart), and refuses a schema newer than the last one given (a downgrade). Blocks:
  // the control thread, before the component's first execute().
  virtual core::Status migrate(const std::string& component,
                               const std::vector<SqlMigration>& migrations) = 0;

  // Finishes what runs, answers the rest (and anything asked later) with kUnavailable; the
  // object stays valid for those who still hold it. Control thread, before the loops that await
  // results are destroyed.
  virtual void close() = 0;
};

// Column `i` of a row as an integer, text or blob (0 / "" when NULL or another type): results
// are read by position, the shape the service's own SQL gave them.
inline int64_t sql_int(const std::vector<SqlValue>& row, size_t i) {
  const auto* v = std::get_if<int64_t>(&row.at(i));
  return v != nullptr ? *v : 0;
}
inline std::string sql_text(const std::vector<SqlValue>& row, size_t i) {
  if (const auto* v = std::get_if<std::string>(&row.at(i))) return *v;
  if (const auto* b = std::get_if<SqlBlob>(&row.at(i))) return b->bytes;
  return {};
}

}  // namespace citadel::store
