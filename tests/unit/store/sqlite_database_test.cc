#include "store/sqlite_database.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "../core/loop_thread.h"

namespace citadel::store {
namespace {

using core::testing::LoopThread;

const std::vector<SqlMigration> kSchema = {
    {1, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
        "score REAL, avatar BLOB, note TEXT)"},
    {2, "CREATE TABLE tokens (hash TEXT PRIMARY KEY, used INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX tokens_used ON tokens(used)"},
};

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path = ::testing::TempDir() + "citadel_sqlite_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(getpid()) + ".db";
    Clean();
  }
  void TearDown() override {
    db.reset();
    Clean();
  }
  void Clean() {
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((path + suffix).c_str());
  }
  void Open(const std::vector<SqlMigration>& schema = kSchema) {
    SqliteDatabase::Options o;
    o.path = path;
    auto r = SqliteDatabase::open(o, schema);
    ASSERT_TRUE(r.ok()) << r.error().message();
    db = std::move(r.value());
  }
  // Runs one transaction from the loop's thread and waits (bounded) for its result.
  SqlResult Run(std::vector<SqlStatement> statements, bool read_only = false) {
    std::promise<SqlResult> done;
    auto fut = done.get_future();
    loop.loop.post([&] {
      db->execute(loop.loop, std::move(statements),
                  [&done](SqlResult& r) { done.set_value(std::move(r)); }, read_only);
    });
    if (fut.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "no result";
      return {};
    }
    return fut.get();
  }
  std::string path;
  LoopThread loop;
  std::unique_ptr<SqliteDatabase> db;
};

TEST_F(SqliteTest, MigrationsApplyOnceInOrderAndADowngradeIsRefused) {
  Open();
  EXPECT_EQ(db->schema_version(), 2);
  db.reset();
  Open();  // again: nothing to apply
  EXPECT_EQ(db->schema_version(), 2);
  auto r = Run({{"SELECT COUNT(*) FROM schema_migrations", {}}}, true);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(std::get<int64_t>(r.statements[0].rows[0][0]), 2);
  db.reset();
  SqliteDatabase::Options o;
  o.path = path;
  auto older = SqliteDatabase::open(o, {kSchema[0]});
  ASSERT_FALSE(older.ok());
  EXPECT_NE(older.error().message().find("newer than this build's 1"), std::string::npos);
  auto bad = SqliteDatabase::open(o, {kSchema[1], kSchema[0]});
  EXPECT_FALSE(bad.ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SqliteTest, ValuesRoundTripThroughBoundParameters) {
  Open();
  const std::string text_with_nul("a\0b'; DROP TABLE users; --", 27);
  auto w = Run({{"INSERT INTO users (email, score, avatar, note) VALUES ($1, $2, $3, $4)",
                 {std::string("a@example.com"), 2.5, SqlBlob{std::string("\x00\xff", 2)},
                  text_with_nul}},
                {"INSERT INTO users (email, score, avatar, note) VALUES ($1, $2, $3, $4)",
                 {std::string("b@example.com"), std::monostate{}, std::monostate{},
                  std::monostate{}}}});
  ASSERT_TRUE(w.ok()) << w.message;
  EXPECT_EQ(w.statements[0].changes, 1);
  EXPECT_EQ(w.statements[1].last_insert_id, 2);
  auto r = Run({{"SELECT id, email, score, avatar, note FROM users WHERE email = $1",
                 {std::string("a@example.com")}}},
               true);
  ASSERT_TRUE(r.ok()) << r.message;
  ASSERT_EQ(r.statements[0].rows.size(), 1u);
  const auto& row = r.statements[0].rows[0];
  EXPECT_EQ(r.statements[0].columns, (std::vector<std::string>{"id", "email", "score", "avatar",
                                                                "note"}));
  EXPECT_EQ(std::get<int64_t>(row[0]), 1);
  EXPECT_EQ(std::get<double>(row[2]), 2.5);
  EXPECT_EQ(std::get<SqlBlob>(row[3]).bytes, std::string("\x00\xff", 2));
  EXPECT_EQ(std::get<std::string>(row[4]), text_with_nul);
  auto n = Run({{"SELECT score FROM users WHERE email = $1", {std::string("b@example.com")}}});
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(std::holds_alternative<std::monostate>(n.statements[0].rows[0][0]));
}

TEST_F(SqliteTest, ATransactionIsAllOrNothing) {
  Open();
  ASSERT_TRUE(Run({{"INSERT INTO users (email) VALUES ($1)", {std::string("x@e.com")}}}).ok());
  auto r = Run({{"INSERT INTO users (email) VALUES ($1)", {std::string("y@e.com")}},
                {"INSERT INTO users (email) VALUES ($1)", {std::string("x@e.com")}}});
  EXPECT_EQ(r.error, SqlError::kConflict);
  EXPECT_NE(r.message.find("statement 1"), std::string::npos) << r.message;
  auto count = Run({{"SELECT COUNT(*) FROM users", {}}}, true);
  EXPECT_EQ(std::get<int64_t>(count.statements[0].rows[0][0]), 1);  // y@e.com rolled back
}

TEST_F(SqliteTest, ExpectedChangesMakeACompareAndSet) {
  Open();
  ASSERT_TRUE(Run({{"INSERT INTO tokens (hash) VALUES ($1)", {std::string("t1")}}}).ok());
  auto rotate = [&] {
    return Run({{"UPDATE tokens SET used = 1 WHERE hash = $1 AND used = 0", {std::string("t1")},
                 1},
                {"INSERT INTO tokens (hash) VALUES ($1)", {std::string("t2")}}});
  };
  EXPECT_TRUE(rotate().ok());
  auto again = rotate();  // a reused token: nothing changes, and t2 is not inserted twice
  EXPECT_EQ(again.error, SqlError::kConflict);
  EXPECT_NE(again.message.find("changed 0 rows, expected 1"), std::string::npos) << again.message;
}

TEST_F(SqliteTest, MistakesAreRefusedAsInvalid) {
  Open();
  EXPECT_EQ(Run({{"SELECT $1, $2", {int64_t{1}}}}).error, SqlError::kInvalid);
  EXPECT_EQ(Run({{"SELECT ?", {int64_t{1}}}}).error, SqlError::kInvalid);  // $1 only
  EXPECT_EQ(Run({{"SELECT 1; SELECT 2", {}}}).error, SqlError::kInvalid);
  EXPECT_EQ(Run({{"SELEC 1", {}}}).error, SqlError::kInvalid);
  // A write on a reader fails, and changes nothing.
  auto w = Run({{"INSERT INTO users (email) VALUES ($1)", {std::string("r@e.com")}}}, true);
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(std::get<int64_t>(Run({{"SELECT COUNT(*) FROM users", {}}}).statements[0].rows[0][0]),
            0);
  // The connection is still sound after each.
  EXPECT_TRUE(Run({{"SELECT 1", {}}}).ok());
}

TEST_F(SqliteTest, ConcurrentWritersShareCommits) {
  Open();
  constexpr int kWrites = 300;
  std::promise<void> all;
  std::atomic<int> ok{0};
  std::atomic<int> seen{0};
  loop.loop.post([&] {
    for (int i = 0; i < kWrites; ++i) {
      db->execute(loop.loop,
                  {{"INSERT INTO users (email) VALUES ($1)",
                    {std::string("u") + std::to_string(i) + "@e.com"}}},
                  [&](SqlResult& r) {
                    if (r.ok()) ++ok;
                    if (++seen == kWrites) all.set_value();
                  });
    }
  });
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(ok.load(), kWrites);
  EXPECT_EQ(db->transactions(), static_cast<uint64_t>(kWrites));
  EXPECT_LT(db->commits(), db->transactions());  // grouped: fewer commits than writes
}

TEST_F(SqliteTest, WorkStillQueuedAtCloseIsAnsweredUnavailable) {
  Open();
  std::atomic<int> answered{0};
  std::atomic<int> unavailable{0};
  std::promise<void> queued;
  loop.loop.post([&] {
    for (int i = 0; i < 2000; ++i) {
      db->execute(loop.loop, {{"INSERT INTO tokens (hash) VALUES ($1)", {std::to_string(i)}}},
                  [&](SqlResult& r) {
                    if (r.error == SqlError::kUnavailable) ++unavailable;
                    ++answered;
                  });
    }
    queued.set_value();
  });
  queued.get_future().wait();
  db.reset();  // closes with work in flight
  for (int i = 0; i < 2000 && answered.load() < 2000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(answered.load(), 2000);  // every callback ran, once
}

TEST_F(SqliteTest, ComponentsVersionTheirTablesApart) {
  Open();
  ASSERT_TRUE(db->migrate("other", {{1, "CREATE TABLE other_things (id INTEGER PRIMARY KEY)"}})
                  .ok());
  EXPECT_EQ(db->schema_version(), 1);
  // Each component's own history: "main" stays at 2, "other" at 1; applying again is a no-op.
  ASSERT_TRUE(db->migrate("other", {{1, "CREATE TABLE other_things (id INTEGER PRIMARY KEY)"}})
                  .ok());
  auto r = db->execute_blocking(
      {{"SELECT component, MAX(version) FROM schema_migrations GROUP BY component "
        "ORDER BY component", {}}},
      true);
  ASSERT_TRUE(r.ok()) << r.message;
  ASSERT_EQ(r.statements[0].rows.size(), 2u);
  EXPECT_EQ(sql_text(r.statements[0].rows[0], 0), "main");
  EXPECT_EQ(sql_int(r.statements[0].rows[0], 1), 2);
  EXPECT_EQ(sql_text(r.statements[0].rows[1], 0), "other");
  EXPECT_EQ(sql_int(r.statements[0].rows[1], 1), 1);
  // A failing migration leaves nothing behind.
  auto bad = db->migrate("other", {{1, ""}, {2, "CREATE TABLE x (a); CREATE TABLE x (b)"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("other migration 2"), std::string::npos) << bad.message();
  auto none = db->execute_blocking({{"SELECT COUNT(*) FROM sqlite_master WHERE name = 'x'", {}}},
                                   true);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(sql_int(none.statements[0].rows[0], 0), 0);
}

TEST_F(SqliteTest, BlockingCallsAndCloseAnswerEveryone) {
  Open();
  auto w = db->execute_blocking(
      {{"INSERT INTO users (email) VALUES ($1)", {std::string("c@example.com")}}});
  ASSERT_TRUE(w.ok()) << w.message;
  auto dup = db->execute_blocking(
      {{"INSERT INTO users (email) VALUES ($1)", {std::string("c@example.com")}}});
  EXPECT_EQ(dup.error, SqlError::kConflict);
  db->close();
  auto late = db->execute_blocking({{"SELECT 1", {}}}, true);
  EXPECT_EQ(late.error, SqlError::kUnavailable);
  EXPECT_EQ(Run({{"SELECT 1", {}}}, true).error, SqlError::kUnavailable);
}

}  // namespace
}  // namespace citadel::store
