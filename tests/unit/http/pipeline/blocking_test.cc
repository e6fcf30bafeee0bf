// run_blocking: results reach the stream that asked, on its worker, and never a recycled one.
#include "http/pipeline/blocking.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "../../core/loop_thread.h"
#include "http/client/http_client.h"

namespace citadel::pipeline {
namespace {

using namespace std::chrono_literals;

class TestWorker final : public WorkerContext {
 public:
  TestWorker(core::EventLoop& loop, core::BlockingPool* pool) : loop_(loop), pool_(pool) {}
  size_t index() const override { return 0; }
  core::EventLoop& loop() override { return loop_; }
  core::BlockingPool* blocking_pool() override { return pool_; }
  observe::ErrorLog& log() override { return log_; }
  http::client::HttpClient& http_client() override {
    if (client_ == nullptr) client_ = std::make_unique<http::client::HttpClient>(loop_, blocks_);
    return *client_;
  }

 private:
  core::EventLoop& loop_;
  core::BlockingPool* pool_;
  observe::ErrorLog log_;
  core::BlockPool blocks_;
  std::unique_ptr<http::client::HttpClient> client_;
};

// A stream as a handle sees it; recycle() is what a stream's next request does.
class TestStream final : public HandleTarget {
 public:
  void recycle() { next_generation(); }
};

// Counts live copies of itself: jobs must free what they captured.
struct Tracked {
  static inline std::atomic<int> live{0};
  Tracked() { ++live; }
  Tracked(const Tracked&) { ++live; }
  Tracked(Tracked&&) noexcept { ++live; }
  ~Tracked() { --live; }
};

TEST(RunBlocking, ResultResumesOnTheStreamsWorker) {
  core::testing::LoopThread lt;
  core::BlockingPool pool(2, 8);
  ASSERT_TRUE(pool.start().ok());
  TestWorker worker(lt.loop, &pool);
  TestStream stream;
  std::promise<std::pair<int, bool>> got;
  const std::thread::id loop_id = lt.id();
  ASSERT_TRUE(run_blocking(worker, StreamHandle{&stream, stream.generation()},
                           [] {
                             std::this_thread::sleep_for(10ms);  // blocking is fine here
                             return 42;
                           },
                           [&](int v) {
                             got.set_value({v, std::this_thread::get_id() == loop_id});
                           }));
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  auto [value, on_loop] = f.get();
  EXPECT_EQ(value, 42);
  EXPECT_TRUE(on_loop);
  pool.stop();
}

TEST(RunBlocking, AStreamRecycledWhileTheWorkRanNeverSeesTheResult) {
  core::testing::LoopThread lt;
  core::BlockingPool pool(1, 8);
  ASSERT_TRUE(pool.start().ok());
  TestWorker worker(lt.loop, &pool);
  TestStream stream;
  std::promise<void> started;
  std::promise<void> release;
  auto release_f = release.get_future().share();
  std::atomic<int> delivered{0};
  {
    Tracked t;
    ASSERT_TRUE(run_blocking(worker, StreamHandle{&stream, stream.generation()},
                             [&started, release_f, t] {
                               started.set_value();
                               release_f.wait();
                               return 1;
                             },
                             [&delivered, t](int) { ++delivered; }));
  }
  started.get_future().wait();
  // The request ends and the stream object serves the next one (on its loop's thread).
  std::promise<void> recycled;
  lt.loop.post([&] {
    stream.recycle();
    recycled.set_value();
  });
  recycled.get_future().wait();
  release.set_value();
  // The job comes back, finds its handle stale, and frees itself with what it captured.
  for (int i = 0; i < 500 && Tracked::live.load() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(Tracked::live.load(), 0);
  EXPECT_EQ(delivered.load(), 0);
  pool.stop();
}

TEST(RunBlocking, WorkForAStreamThatEndedBeforeItsTurnIsSkipped) {
  // From a review: POST a login and disconnect, again and again; without this every dead
  // request's Argon2id hash would still run and keep live users waiting behind it.
  core::testing::LoopThread lt;
  core::BlockingPool pool(1, 8);
  ASSERT_TRUE(pool.start().ok());
  TestWorker worker(lt.loop, &pool);
  TestStream busy, gone;
  std::promise<void> started;
  std::promise<void> release;
  auto release_f = release.get_future().share();
  std::atomic<int> ran{0};
  std::atomic<int> delivered{0};
  // The one pool thread is held by a first job, so the second waits in the queue.
  ASSERT_TRUE(run_blocking(worker, StreamHandle{&busy, busy.generation()},
                           [&started, release_f] {
                             started.set_value();
                             release_f.wait();
                             return 0;
                           },
                           [](int) {}));
  started.get_future().wait();
  ASSERT_TRUE(run_blocking(worker, StreamHandle{&gone, gone.generation()},
                           [&ran] {
                             ++ran;
                             return 1;
                           },
                           [&delivered](int) { ++delivered; }));
  std::promise<void> ended;
  lt.loop.post([&] {
    gone.recycle();  // its client left
    ended.set_value();
  });
  ended.get_future().wait();
  // A third job behind it: once it has run, the pool thread has taken the second one up (one
  // thread, in order) rather than the shutdown cancelling it.
  TestStream after;
  std::promise<void> third;
  ASSERT_TRUE(run_blocking(worker, StreamHandle{&after, after.generation()},
                           [&third] {
                             third.set_value();
                             return 2;
                           },
                           [](int) {}));
  release.set_value();
  ASSERT_EQ(third.get_future().wait_for(5s), std::future_status::ready);
  pool.stop();
  for (int i = 0; i < 3; ++i) {
    std::promise<void> p;
    lt.loop.post([&] { p.set_value(); });
    p.get_future().wait();
  }
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(delivered.load(), 0);
}

TEST(RunBlocking, NoPoolOrAFullPoolRefusesAtOnce) {
  core::testing::LoopThread lt;
  TestStream stream;
  TestWorker none(lt.loop, nullptr);
  EXPECT_FALSE(run_blocking(none, StreamHandle{&stream, stream.generation()}, [] { return 0; },
                            [](int) {}));
  core::BlockingPool pool(1, 1);
  ASSERT_TRUE(pool.start().ok());
  TestWorker worker(lt.loop, &pool);
  std::promise<void> release;
  auto release_f = release.get_future().share();
  std::promise<void> started;
  ASSERT_TRUE(run_blocking(worker, StreamHandle{&stream, stream.generation()},
                           [&started, release_f] {
                             started.set_value();
                             release_f.wait();
                             return 0;
                           },
                           [](int) {}));
  started.get_future().wait();  // the one thread is busy
  // Fill the queue (its capacity may be rounded up); the first refusal comes at once.
  bool refused = false;
  int accepted = 0;
  std::atomic<int> done{0};
  for (int i = 0; i < 64 && !refused; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    refused = !run_blocking(worker, StreamHandle{&stream, stream.generation()},
                            [] { return 0; }, [&done](int) { ++done; });
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 50ms);  // never waits
    if (!refused) ++accepted;
  }
  EXPECT_TRUE(refused);
  release.set_value();
  // Every job the pool took comes back (none was lost in its ring).
  for (int i = 0; i < 500 && done.load() != accepted; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(done.load(), accepted);
  pool.stop();
}

}  // namespace
}  // namespace citadel::pipeline
