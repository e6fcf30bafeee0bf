// The embedded SQL engine: SQLite (Debian's libsqlite3) in one file under store.data_dir, in WAL
// mode, behind store/sql.h.
//
// Threads: one writer thread owns the only write connection and commits in groups: every
// transaction queued while the previous commit ran goes into the next one (each in a savepoint
// of its own, so one failing rolls back alone), so N concurrent writers cost one fsync, not N.
// Read-only work goes to reader threads, each with its own read-only connection (WAL lets them
// read while the writer writes). Callers hand work over without a lock: each thread has an
// intrusive lock-free queue (a Treiber stack it empties whole) and a semaphore; results go back
// with EventLoop::complete(). The queue is bounded: past `max_queue` pending transactions,
// execute() answers kUnavailable at once (the caller answers 503), never waits.
//
// Prepared statements are cached per connection by their SQL text.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "store/sql.h"

namespace citadel::store {

class SqliteDatabase final : public SqlDatabase {
 public:
  struct Options {
    std::string path;        // the database file (created with mode 0600 when absent)
    size_t readers = 2;      // reader threads
    size_t max_queue = 4096; // transactions waiting, all threads together
    int busy_timeout_ms = 5000;
  };
  // Opens or creates the database, turns WAL on and starts the threads; then migrate(
  // `component`, `migrations`) when migrations are given.
  static core::Result<std::unique_ptr<SqliteDatabase>> open(
      const Options& options, const std::vector<SqlMigration>& migrations = {},
      const std::string& component = "main");
  // close().
  ~SqliteDatabase() override;
  // Stops the threads once the transactions they hold are done; what is still queued, and
  // whatever is asked after, completes with kUnavailable on its loop (a stopped loop's owner runs
  // EventLoop::run_completions()). Call it before the loops that await results are destroyed.
  void close() override;

  void execute(core::EventLoop& loop, std::vector<SqlStatement> statements, Done done,
               bool read_only = false) override;
  SqlResult execute_blocking(std::vector<SqlStatement> statements,
                             bool read_only = false) override;
  // On a connection of its own (BEGIN IMMEDIATE waits for the writer thread's commit).
  core::Status migrate(const std::string& component,
                       const std::vector<SqlMigration>& migrations) override;

  // The schema version of the component last migrated (tests, logs).
  int schema_version() const { return schema_version_; }
  // Commits the writer made, and transactions it committed (commits <= transactions: group
  // commit).
  uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  uint64_t transactions() const { return transactions_.load(std::memory_order_relaxed); }

  struct Job;
  struct Worker;

 private:
  SqliteDatabase() = default;
  void run_worker(Worker& w, bool writer);
  void write_batch(Worker& w, Job* batch);  // the writer: one commit for the batch
  void read_batch(Worker& w, Job* batch);   // a reader: a snapshot per job
  void push(Worker& w, Job* job);
  void submit(Job* job, bool read_only);
  void finish(Job* job);  // counts it out and hands it to its loop

  Options options_;
  int schema_version_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;  // [0] the writer, then the readers
  std::atomic<size_t> next_reader_{0};
  std::atomic<size_t> pending_{0};
  std::atomic<bool> stopping_{false};
  bool closed_ = false;
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> transactions_{0};
};

}  // namespace citadel::store
