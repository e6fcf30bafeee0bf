#include "core/blocking_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "loop_thread.h"

namespace citadel::core {
namespace {

using std::chrono::milliseconds;
using testing::LoopThread;

constexpr milliseconds kDeadline{20'000};  // generous: ThreadSanitizer on a shared machine

// Holds pool threads inside run_blocking() until the test opens it (or the deadline passes, so
// that a failing test still ends).
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kDeadline, [this] { return open_; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// What the loop thread saw of the jobs; read by the test after the loop stopped.
struct Results {
  std::thread::id loop_thread;
  int resumed = 0;
  int cancelled = 0;
  int off_loop = 0;
  int blocking_on_loop = 0;
  int wrong_answer = 0;
  int expected = 0;  // stop the loop after this many
  EventLoop* loop = nullptr;
};

// Heap-allocated and freed by its own run(), the way a request would own one; `live` counts
// jobs not yet freed, so a job the pool forgets shows up as a leak.
std::atomic<int> live{0};

class Square final : public BlockingJob {
 public:
  Square(Results* results, int input, Gate* gate = nullptr)
      : results_(results), input_(input), gate_(gate) {
    live.fetch_add(1);
  }
  ~Square() { live.fetch_sub(1); }
  void run_blocking() override {
    if (gate_ != nullptr) gate_->wait();
    blocking_thread_ = std::this_thread::get_id();
    output_ = input_ * input_;
  }
  void run() override {
    Results& r = *results_;
    if (std::this_thread::get_id() != r.loop_thread) ++r.off_loop;
    if (cancelled()) {
      ++r.cancelled;
    } else {
      if (blocking_thread_ == r.loop_thread) ++r.blocking_on_loop;
      if (output_ != input_ * input_) ++r.wrong_answer;
    }
    ++r.resumed;
    bool last = r.resumed == r.expected;
    delete this;
    if (last && r.loop != nullptr) r.loop->stop();
  }

 private:
  Results* results_;
  int input_;
  Gate* gate_;
  int output_ = -1;
  std::thread::id blocking_thread_;
};

TEST(BlockingPool, ResultsResumeOnTheSubmittingLoop) {
  constexpr int kJobs = 200;
  Results r;
  LoopThread lt;
  r.loop_thread = lt.id();
  r.expected = kJobs;
  r.loop = &lt.loop;
  BlockingPool pool(4, kJobs);
  ASSERT_TRUE(pool.start().ok());
  for (int i = 0; i < kJobs; ++i) {
    auto* job = new Square(&r, i);
    job->loop = &lt.loop;
    ASSERT_TRUE(pool.submit(job));
  }
  ASSERT_TRUE(lt.wait_stopped(kDeadline));
  pool.stop();
  EXPECT_EQ(r.resumed, kJobs);
  EXPECT_EQ(r.cancelled, 0);
  EXPECT_EQ(r.off_loop, 0);
  EXPECT_EQ(r.blocking_on_loop, 0);
  EXPECT_EQ(r.wrong_answer, 0);
  EXPECT_EQ(pool.rejected(), 0u);
  EXPECT_EQ(pool.depth(), 0u);
  EXPECT_EQ(live.load(), 0);
}

TEST(BlockingPool, FullQueueRefusesAtOnceWhileEveryThreadIsStuck) {
  constexpr int kThreads = 2;
  constexpr int kCapacity = 3;
  Results r;
  Gate gate;
  LoopThread lt;
  r.loop_thread = lt.id();
  r.expected = kThreads + kCapacity;
  r.loop = &lt.loop;
  BlockingPool pool(kThreads, kCapacity);
  ASSERT_TRUE(pool.start().ok());
  auto submit = [&] {
    auto* job = new Square(&r, 7, &gate);
    job->loop = &lt.loop;
    if (pool.submit(job)) return true;
    delete job;  // refused: still ours
    return false;
  };
  // Two jobs occupy both threads (the queue drains to 0), three more fill the queue.
  for (int i = 0; i < kThreads; ++i) ASSERT_TRUE(submit());
  auto until = std::chrono::steady_clock::now() + kDeadline;
  while (pool.depth() != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_EQ(pool.depth(), 0u);
  for (int i = 0; i < kCapacity; ++i) ASSERT_TRUE(submit());
  EXPECT_EQ(pool.depth(), static_cast<size_t>(kCapacity));

  auto start = std::chrono::steady_clock::now();
  bool accepted = submit();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(accepted);
  // A refusal is a few atomic operations; 50 ms leaves room for a sanitizer and a busy machine
  // while still catching a submit() that waits for a free slot.
  EXPECT_LT(took, milliseconds(50));
  EXPECT_EQ(pool.rejected(), 1u);

  gate.open();
  ASSERT_TRUE(lt.wait_stopped(kDeadline));
  pool.stop();
  EXPECT_EQ(r.resumed, kThreads + kCapacity);
  EXPECT_EQ(r.cancelled, 0);
  EXPECT_EQ(r.off_loop, 0);
  EXPECT_EQ(r.wrong_answer, 0);
  EXPECT_EQ(live.load(), 0);
}

// Blocks until the pool is stopping, so that stop() is certain to find the jobs behind it
// still queued.
class UntilStopping final : public BlockingJob {
 public:
  explicit UntilStopping(BlockingPool& pool) : pool_(pool) {}
  void run_blocking() override {
    auto until = std::chrono::steady_clock::now() + kDeadline;
    while (!pool_.stopping() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    ran_blocking = true;
  }
  void run() override { ++resumed; }
  bool ran_blocking = false;
  int resumed = 0;

 private:
  BlockingPool& pool_;
};

TEST(BlockingPool, StopFinishesTheRunningJobAndCancelsTheQueued) {
  constexpr int kQueued = 5;
  Results r;
  EventLoop loop;  // not running: stop() leaves the results in its completion queue
  r.loop_thread = std::this_thread::get_id();
  BlockingPool pool(1, 8);
  ASSERT_TRUE(pool.start().ok());
  UntilStopping running(pool);
  running.loop = &loop;
  ASSERT_TRUE(pool.submit(&running));
  auto until = std::chrono::steady_clock::now() + kDeadline;
  while (pool.depth() != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_EQ(pool.depth(), 0u);  // the thread has it
  for (int i = 0; i < kQueued; ++i) {
    auto* job = new Square(&r, i);
    job->loop = &loop;
    ASSERT_TRUE(pool.submit(job));
  }
  pool.stop();
  EXPECT_EQ(pool.depth(), 0u);

  Square refused_job(&r, 1);  // on the stack: never submitted successfully, never run
  refused_job.loop = &loop;
  EXPECT_FALSE(pool.submit(&refused_job));
  EXPECT_EQ(pool.rejected(), 1u);

  // The owner of the stopped loop hands the last results over.
  EXPECT_EQ(loop.run_completions(), static_cast<size_t>(kQueued + 1));
  EXPECT_TRUE(running.ran_blocking);
  EXPECT_FALSE(running.cancelled());
  EXPECT_EQ(running.resumed, 1);
  EXPECT_EQ(r.resumed, kQueued);
  EXPECT_EQ(r.cancelled, kQueued);
  EXPECT_EQ(r.off_loop, 0);
  EXPECT_EQ(live.load(), 1);  // only refused_job, still alive on the stack
}

// Loops submit and take their results at the same time as the pool threads finish others: every
// accepted job comes back exactly once, on its own loop; every refused one stays with its owner.
TEST(BlockingPool, ConcurrentSubmittersFromSeveralLoops) {
  constexpr int kLoops = 3;
  constexpr int kPerLoop = 5'000;
  BlockingPool pool(4, 16);  // small queue: some submissions are refused
  ASSERT_TRUE(pool.start().ok());
  std::vector<Results> results(kLoops);
  std::vector<std::unique_ptr<LoopThread>> loops;
  for (int l = 0; l < kLoops; ++l) {
    loops.push_back(std::make_unique<LoopThread>());
    results[l].loop_thread = loops[l]->id();
  }
  std::vector<int> accepted(kLoops, 0);
  std::vector<std::thread> submitters;
  for (int l = 0; l < kLoops; ++l) {
    submitters.emplace_back([&, l] {
      for (int i = 0; i < kPerLoop; ++i) {
        auto* job = new Square(&results[l], i % 1000);
        job->loop = &loops[l]->loop;
        if (pool.submit(job)) {
          ++accepted[l];
        } else {
          delete job;
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& t : submitters) t.join();
  pool.stop();
  loops.clear();  // stops each loop and runs what is left in its queue on this thread
  uint64_t total_accepted = 0;
  for (int l = 0; l < kLoops; ++l) {
    EXPECT_EQ(results[l].resumed, accepted[l]);
    EXPECT_EQ(results[l].wrong_answer, 0);
    EXPECT_EQ(results[l].blocking_on_loop, 0);
    total_accepted += static_cast<uint64_t>(accepted[l]);
  }
  EXPECT_GT(total_accepted, 0u);
  EXPECT_EQ(total_accepted + pool.rejected(), static_cast<uint64_t>(kLoops) * kPerLoop);
  EXPECT_EQ(live.load(), 0);
}

TEST(BlockingPool, DestructorStopsAndCancels) {
  Results r;
  EventLoop loop;
  r.loop_thread = std::this_thread::get_id();
  {
    BlockingPool pool(2, 4);  // never started: everything queued is cancelled
    for (int i = 0; i < 4; ++i) {
      auto* job = new Square(&r, i);
      job->loop = &loop;
      ASSERT_TRUE(pool.submit(job));
    }
  }
  EXPECT_EQ(loop.run_completions(), 4u);
  EXPECT_EQ(r.cancelled, 4);
  EXPECT_EQ(live.load(), 0);
}

}  // namespace
}  // namespace citadel::core
