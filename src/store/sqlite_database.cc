#include "store/sqlite_database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace citadel::store {

// One transaction on its way: queued by execute(), run by a worker thread, completed on the
// caller's loop (run() delivers the result and frees it).
struct SqliteDatabase::Job final : core::Completion {
  core::EventLoop* loop = nullptr;            // or, for execute_blocking(), `waiting`:
  std::binary_semaphore* waiting = nullptr;  // released when done; the waiter owns the job
  std::vector<SqlStatement> statements;
  Done done;
  SqlResult result;
  Job* next = nullptr;  // in a worker's queue
  // On the loop; the database may be gone by then (it counted the job out when it let go).
  void run() override {
    Done d = std::move(done);
    SqlResult r = std::move(result);
    delete this;
    d(r);
  }
};

// A thread, its connection, its prepared statements and its queue.
struct SqliteDatabase::Worker {
  sqlite3* db = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache;
  std::atomic<Job*> head{nullptr};
  std::counting_semaphore<> wake{0};
  std::thread thread;
  ~Worker() {
    for (auto& [_, s] : cache) sqlite3_finalize(s);
    sqlite3_close_v2(db);
  }
};

namespace {

SqlError error_kind(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return SqlError::kConflict;
    case SQLITE_ERROR:
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_READONLY:
      return SqlError::kInvalid;
    default:
      return SqlError::kUnavailable;  // busy, locked, I/O, full, corrupt
  }
}

core::Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err != nullptr ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return core::Status::error(m);
  }
  return core::Status();
}

core::Result<sqlite3*> open_connection(const SqliteDatabase::Options& o, bool read_only) {
  sqlite3* db = nullptr;
  const int flags =
      (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;  // each connection is used by one thread only
  if (sqlite3_open_v2(o.path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string m = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return core::Status::error("sqlite: " + o.path + ": " + m);
  }
  sqlite3_busy_timeout(db, o.busy_timeout_ms);
  sqlite3_extended_result_codes(db, 1);
  // WAL: readers never block the writer; NORMAL: a commit is durable at the next checkpoint's
  // fsync of the WAL (SQLite's recommended pairing for WAL); foreign keys enforced.
  for (const char* pragma : {"PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL"}) {
    if (core::Status s = exec(db, pragma); !s.ok()) {
      sqlite3_close_v2(db);
      return core::Status::error("sqlite: " + o.path + ": " + s.message());
    }
  }
  if (!read_only) {
    if (core::Status s = exec(db, "PRAGMA journal_mode=WAL"); !s.ok()) {
      sqlite3_close_v2(db);
      return core::Status::error("sqlite: " + o.path + ": " + s.message());
    }
  }
  return db;
}

void fail(SqlResult& r, SqlError e, std::string message) {
  r.error = e;
  r.message = std::move(message);
  r.statements.clear();
}

// Runs one statement on `w`'s connection into `out`; false (with `r` failed) on an error.
bool run_statement(SqliteDatabase::Worker& w, const SqlStatement& st, size_t index,
                   SqlStatementResult& out, SqlResult& r) {
  const std::string where = "statement " + std::to_string(index) + ": ";
  sqlite3_stmt*& stmt = w.cache[st.sql];
  if (stmt == nullptr) {
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(w.db, st.sql.c_str(), static_cast<int>(st.sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK || stmt == nullptr) {
      fail(r, rc == SQLITE_OK ? SqlError::kInvalid : error_kind(rc),
           where + (rc == SQLITE_OK ? "no SQL" : sqlite3_errmsg(w.db)));
      w.cache.erase(st.sql);
      return false;
    }
    if (tail != nullptr && std::strspn(tail, " \t\r\n;") != std::strlen(tail)) {
      fail(r, SqlError::kInvalid, where + "one SQL statement per SqlStatement");
      sqlite3_finalize(stmt);
      w.cache.erase(st.sql);
      return false;
    }
  }
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  if (sqlite3_bind_parameter_count(stmt) != static_cast<int>(st.params.size())) {
    fail(r, SqlError::kInvalid,
         where + "it has " + std::to_string(sqlite3_bind_parameter_count(stmt)) +
             " parameters, " + std::to_string(st.params.size()) + " given");
    return false;
  }
  for (size_t i = 0; i < st.params.size(); ++i) {
    const std::string name = "$" + std::to_string(i + 1);
    const int at = sqlite3_bind_parameter_index(stmt, name.c_str());
    if (at == 0) {
      fail(r, SqlError::kInvalid, where + "no parameter " + name + " (write $1, $2, ...)");
      return false;
    }
    const SqlValue& v = st.params[i];
    int rc = SQLITE_OK;
    if (std::holds_alternative<std::monostate>(v)) {
      rc = sqlite3_bind_null(stmt, at);
    } else if (const auto* n = std::get_if<int64_t>(&v)) {
      rc = sqlite3_bind_int64(stmt, at, *n);
    } else if (const auto* d = std::get_if<double>(&v)) {
      rc = sqlite3_bind_double(stmt, at, *d);
    } else if (const auto* s = std::get_if<std::string>(&v)) {
      rc = sqlite3_bind_text64(stmt, at, s->data(), s->size(), SQLITE_STATIC, SQLITE_UTF8);
    } else {
      const auto& b = std::get<SqlBlob>(v).bytes;
      rc = sqlite3_bind_blob64(stmt, at, b.data(), b.size(), SQLITE_STATIC);
    }
    if (rc != SQLITE_OK) {
      fail(r, error_kind(rc), where + sqlite3_errmsg(w.db));
      return false;
    }
  }
  const int ncols = sqlite3_column_count(stmt);
  for (int c = 0; c < ncols; ++c) out.columns.emplace_back(sqlite3_column_name(stmt, c));
  for (;;) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      fail(r, error_kind(rc), where + sqlite3_errmsg(w.db));
      sqlite3_reset(stmt);
      return false;
    }
    std::vector<SqlValue>& row = out.rows.emplace_back();
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      switch (sqlite3_column_type(stmt, c)) {
        case SQLITE_INTEGER:
          row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
          break;
        case SQLITE_FLOAT:
          row.emplace_back(sqlite3_column_double(stmt, c));
          break;
        case SQLITE_TEXT:
          row.emplace_back(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, c)),
                                       static_cast<size_t>(sqlite3_column_bytes(stmt, c))));
          break;
        case SQLITE_BLOB: {
          const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt, c));
          const auto n = static_cast<size_t>(sqlite3_column_bytes(stmt, c));
          row.emplace_back(SqlBlob{p != nullptr ? std::string(p, n) : std::string()});
          break;
        }
        default:
          row.emplace_back(std::monostate{});
      }
    }
  }
  out.changes = sqlite3_stmt_readonly(stmt) ? 0 : sqlite3_changes64(w.db);
  out.last_insert_id = sqlite3_last_insert_rowid(w.db);
  sqlite3_reset(stmt);  // releases its read lock and the bound values' storage
  if (st.expect_changes >= 0 && out.changes != st.expect_changes) {
    fail(r, SqlError::kConflict,
         where + "changed " + std::to_string(out.changes) + " rows, expected " +
             std::to_string(st.expect_changes));
    return false;
  }
  return true;
}

// Runs a job's statements on `w` (inside whatever transaction the caller opened).
bool run_job(SqliteDatabase::Worker& w, SqliteDatabase::Job& job) {
  job.result.statements.resize(job.statements.size());
  for (size_t i = 0; i < job.statements.size(); ++i) {
    if (!run_statement(w, job.statements[i], i, job.result.statements[i], job.result)) {
      job.result.failed_statement = static_cast<int>(i);
      return false;
    }
  }
  return true;
}

}  // namespace

core::Result<std::unique_ptr<SqliteDatabase>> SqliteDatabase::open(
    const Options& options, const std::vector<SqlMigration>& migrations,
    const std::string& component) {
  std::unique_ptr<SqliteDatabase> db(new SqliteDatabase());
  db->options_ = options;
  db->options_.readers = std::max<size_t>(options.readers, 1);
  {
    // Created private: it holds accounts and secrets' hashes.
    int fd = ::open(options.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return core::Status::error("sqlite: cannot open " + options.path + ": " +
                                 std::strerror(errno));
    }
    ::close(fd);
  }
  auto writer = std::make_unique<Worker>();
  auto conn = open_connection(db->options_, false);
  if (!conn.ok()) return conn.error();
  writer->db = conn.value();
  db->workers_.push_back(std::move(writer));
  for (size_t i = 0; i < db->options_.readers; ++i) {
    auto reader = std::make_unique<Worker>();
    auto rc = open_connection(db->options_, true);
    if (!rc.ok()) return rc.error();
    reader->db = rc.value();
    db->workers_.push_back(std::move(reader));
  }
  SqliteDatabase* self = db.get();
  for (size_t i = 0; i < db->workers_.size(); ++i) {
    Worker& w = *db->workers_[i];
    try {
      w.thread = std::thread([self, &w, i] { self->run_worker(w, i == 0); });
    } catch (const std::system_error& e) {
      return core::Status::error(std::string("sqlite: cannot start a thread: ") + e.what());
    }
  }
  if (!migrations.empty()) {
    if (core::Status s = db->migrate(component, migrations); !s.ok()) return s;
  }
  return db;
}

core::Status SqliteDatabase::migrate(const std::string& component,
                                     const std::vector<SqlMigration>& migrations) {
  int last = 0;
  for (const auto& m : migrations) {
    if (m.version <= last) {
      return core::Status::error("sqlite: " + component + ": migration versions must increase (" +
                                 std::to_string(m.version) + " after " + std::to_string(last) +
                                 ")");
    }
    last = m.version;
  }
  auto conn = open_connection(options_, false);
  if (!conn.ok()) return conn.error();
  sqlite3* db = conn.value();
  struct Closer {
    sqlite3* db;
    ~Closer() { sqlite3_close_v2(db); }
  } closer{db};
  if (core::Status s = exec(db,
                            "CREATE TABLE IF NOT EXISTS schema_migrations ("
                            "component TEXT NOT NULL, version INTEGER NOT NULL, "
                            "applied_at INTEGER NOT NULL, PRIMARY KEY (component, version))");
      !s.ok()) {
    return core::Status::error("sqlite: " + s.message());
  }
  // BEGIN IMMEDIATE first: two instances starting at once apply each migration once.
  if (core::Status s = exec(db, "BEGIN IMMEDIATE"); !s.ok()) {
    return core::Status::error("sqlite: " + s.message());
  }
  int current = 0;
  {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT COALESCE(MAX(version), 0) FROM schema_migrations "
                       "WHERE component = ?1",
                       -1, &st, nullptr);
    if (st != nullptr) {
      sqlite3_bind_text(st, 1, component.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW) current = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
  }
  if (current > last) {
    exec(db, "ROLLBACK");
    return core::Status::error("sqlite: " + options_.path + ": " + component +
                               " is at schema version " + std::to_string(current) +
                               ", newer than this build's " + std::to_string(last) +
                               " (a downgrade is not supported)");
  }
  core::Status s;
  for (const auto& m : migrations) {
    if (m.version <= current) continue;
    s = exec(db, m.sql.c_str());
    if (!s.ok()) {
      s = core::Status::error("sqlite: " + component + " migration " +
                              std::to_string(m.version) + ": " + s.message());
      break;
    }
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO schema_migrations VALUES (?1, ?2, strftime('%s','now'))", -1,
                       &st, nullptr);
    sqlite3_bind_text(st, 1, component.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, m.version);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
      s = core::Status::error("sqlite: " + std::string(sqlite3_errmsg(db)));
      break;
    }
    current = m.version;
  }
  if (s.ok()) s = exec(db, "COMMIT");
  if (!s.ok()) {
    exec(db, "ROLLBACK");
    return s;
  }
  schema_version_ = current;
  return s;
}

SqliteDatabase::~SqliteDatabase() { close(); }

void SqliteDatabase::close() {
  if (closed_) return;
  closed_ = true;
  stopping_.store(true, std::memory_order_release);
  for (auto& w : workers_) w->wake.release();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  // What nobody took: answered, not dropped.
  for (auto& w : workers_) {
    Job* j = w->head.exchange(nullptr);
    while (j != nullptr) {
      Job* next = j->next;
      fail(j->result, SqlError::kUnavailable, "the database closed");
      finish(j);
      j = next;
    }
  }
}

void SqliteDatabase::finish(Job* job) {
  pending_.fetch_sub(1, std::memory_order_relaxed);
  if (job->waiting != nullptr) {
    job->waiting->release();
    return;
  }
  job->loop->complete(job);
}

void SqliteDatabase::push(Worker& w, Job* job) {
  Job* head = w.head.load(std::memory_order_relaxed);
  do {
    job->next = head;
  } while (!w.head.compare_exchange_weak(head, job, std::memory_order_release,
                                         std::memory_order_relaxed));
  if (head == nullptr) w.wake.release();  // it may be asleep: the queue was empty
}

void SqliteDatabase::execute(core::EventLoop& loop, std::vector<SqlStatement> statements,
                             Done done, bool read_only) {
  auto* job = new Job();
  job->loop = &loop;
  job->statements = std::move(statements);
  job->done = std::move(done);
  submit(job, read_only);
}

SqlResult SqliteDatabase::execute_blocking(std::vector<SqlStatement> statements,
                                           bool read_only) {
  std::binary_semaphore done{0};
  Job job;
  job.waiting = &done;
  job.statements = std::move(statements);
  submit(&job, read_only);
  done.acquire();
  return std::move(job.result);
}

void SqliteDatabase::submit(Job* job, bool read_only) {
  if (pending_.fetch_add(1, std::memory_order_relaxed) >= options_.max_queue ||
      stopping_.load(std::memory_order_acquire)) {
    fail(job->result, SqlError::kUnavailable, "the database is overloaded or closing");
    finish(job);
    return;
  }
  if (!read_only) {
    push(*workers_[0], job);
    return;
  }
  const size_t r = next_reader_.fetch_add(1, std::memory_order_relaxed) % options_.readers;
  push(*workers_[1 + r], job);
}

namespace {

// The queue emptied whole, oldest first.
SqliteDatabase::Job* take_all(std::atomic<SqliteDatabase::Job*>& head) {
  SqliteDatabase::Job* j = head.exchange(nullptr, std::memory_order_acquire);
  SqliteDatabase::Job* fifo = nullptr;
  while (j != nullptr) {
    SqliteDatabase::Job* next = j->next;
    j->next = fifo;
    fifo = j;
    j = next;
  }
  return fifo;
}

}  // namespace

void SqliteDatabase::run_worker(Worker& w, bool writer) {
  while (true) {
    w.wake.acquire();
    Job* batch = take_all(w.head);
    if (batch == nullptr) {
      if (stopping_.load(std::memory_order_acquire)) return;
      continue;
    }
    if (writer) write_batch(w, batch);
    else read_batch(w, batch);
    while (batch != nullptr) {
      Job* next = batch->next;
      finish(batch);
      batch = next;
    }
    if (stopping_.load(std::memory_order_acquire)) return;  // the rest is answered on close
  }
}

void SqliteDatabase::write_batch(Worker& w, Job* batch) {
  // One transaction for the whole batch, a savepoint per job.
  core::Status begin = exec(w.db, "BEGIN IMMEDIATE");
  size_t n = 0;
  for (Job* j = batch; j != nullptr; j = j->next) {
    ++n;
    if (!begin.ok()) {
      fail(j->result, SqlError::kUnavailable, "cannot begin: " + begin.message());
      continue;
    }
    exec(w.db, "SAVEPOINT job");
    if (run_job(w, *j)) {
      exec(w.db, "RELEASE job");
    } else {
      exec(w.db, "ROLLBACK TO job");
      exec(w.db, "RELEASE job");
    }
  }
  if (!begin.ok()) return;
  core::Status commit = exec(w.db, "COMMIT");
  if (!commit.ok()) {
    exec(w.db, "ROLLBACK");
    for (Job* j = batch; j != nullptr; j = j->next) {
      if (j->result.ok()) fail(j->result, SqlError::kUnavailable, "commit: " + commit.message());
    }
    return;
  }
  commits_.fetch_add(1, std::memory_order_relaxed);
  transactions_.fetch_add(n, std::memory_order_relaxed);
}

void SqliteDatabase::read_batch(Worker& w, Job* batch) {
  for (Job* j = batch; j != nullptr; j = j->next) {
    // One read transaction per job: its statements see one snapshot.
    core::Status begin = exec(w.db, "BEGIN");
    if (!begin.ok()) {
      fail(j->result, SqlError::kUnavailable, "cannot begin: " + begin.message());
      continue;
    }
    run_job(w, *j);
    exec(w.db, "COMMIT");
  }
}

}  // namespace citadel::store
