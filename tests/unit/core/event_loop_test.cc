#include "core/event_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loop_thread.h"

namespace citadel::core {
namespace {

// Scheduled, then closed and handed to the graveyard before its task ran.
class Victim final : public Deferred, public LoopTask {
 public:
  explicit Victim(std::vector<std::string>& log) : log_(log) {}
  ~Victim() override { log_.push_back("destroyed"); }
  void run_task() override { log_.push_back(closed ? "task after close" : "task"); }
  bool closed = false;

 private:
  std::vector<std::string>& log_;
};

// A task that reschedules itself `left` times (more rounds than run_tasks() takes at once) and,
// on its 4th run, schedules a Victim and closes it: the victim's task is then left for the next
// loop iteration while the victim sits in the graveyard.
class Chatty final : public LoopTask {
 public:
  Chatty(EventLoop& loop, int left, std::vector<std::string>& log)
      : loop_(loop), left_(left), log_(log) {}
  void run_task() override {
    ++runs;
    if (runs == 4) {
      auto* v = new Victim(log_);
      loop_.schedule(v);
      v->closed = true;
      loop_.defer_delete(std::unique_ptr<Deferred>(v));
    }
    if (--left_ > 0) loop_.schedule(this);
  }
  int runs = 0;

 private:
  EventLoop& loop_;
  int left_;
  std::vector<std::string>& log_;
};

TEST(EventLoop, DeferredObjectsOutliveTheirPendingTasks) {
  EventLoop loop;
  std::vector<std::string> log;
  Chatty chatty(loop, 20, log);
  // Kicked off from a timer, so that its rounds run in the iteration's last run_tasks(), right
  // before the graveyard is considered.
  struct Kick {
    EventLoop* loop;
    Chatty* chatty;
  } kick{&loop, &chatty};
  Timer start([](void* k) {
    auto* kk = static_cast<Kick*>(k);
    kk->loop->schedule(kk->chatty);
  }, &kick);
  loop.arm(start, 1);
  Timer stop_timer([](void* l) { static_cast<EventLoop*>(l)->stop(); }, &loop);
  loop.arm(stop_timer, 50);
  loop.run();
  EXPECT_EQ(chatty.runs, 20);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], "task after close");
  EXPECT_EQ(log[1], "destroyed");
}

TEST(EventLoop, PostFromAnotherThreadAndTimers) {
  EventLoop loop;
  int fired = 0;
  bool posted = false;
  Timer t([](void* n) { ++*static_cast<int*>(n); }, &fired);
  loop.arm(t, 5);
  std::thread other([&] {
    loop.post([&] { posted = true; });
  });
  // Stops once the post has run (a loaded machine may start the thread late: a fixed stop
  // time made this flaky under TSan), or after 5 s.
  struct Stopper {
    EventLoop* loop;
    bool* posted;
    Timer* self = nullptr;
    int ticks = 0;
  };
  Stopper st{&loop, &posted};
  Timer stop_timer(
      [](void* p) {
        auto* s = static_cast<Stopper*>(p);
        if (*s->posted || ++s->ticks >= 500) s->loop->stop();
        else s->loop->arm(*s->self, 10);
      },
      &st);
  st.self = &stop_timer;
  loop.arm(stop_timer, 60);
  loop.run();
  other.join();
  EXPECT_TRUE(posted);
  EXPECT_EQ(fired, 1);
}

using std::chrono::milliseconds;
using testing::LoopThread;

// Generous bounds: the same tests run under ThreadSanitizer on a shared two-core machine.
constexpr milliseconds kDeadline{20'000};

// One completion of a stream of completions from one producer. Runs on the loop thread and
// checks what it can there; the test reads the tallies after the loop has stopped.
struct Tally {
  std::thread::id loop_thread;
  std::vector<uint64_t> next_seq;  // per producer
  uint64_t ran = 0;
  uint64_t total = 0;
  uint64_t off_thread = 0;
  uint64_t out_of_order = 0;
  EventLoop* loop = nullptr;
};

class Numbered final : public Completion {
 public:
  void run() override {
    ++runs;
    if (std::this_thread::get_id() != tally->loop_thread) ++tally->off_thread;
    if (tally->next_seq[producer] != seq) ++tally->out_of_order;
    tally->next_seq[producer] = seq + 1;
    if (++tally->ran == tally->total) tally->loop->stop();
  }
  Tally* tally = nullptr;
  size_t producer = 0;
  uint64_t seq = 0;
  int runs = 0;
};

TEST(Completion, ManyProducersEachRunOnceOnTheLoopThreadInOrder) {
  constexpr size_t kProducers = 4;
  constexpr uint64_t kPerProducer = 100'000;
  // Declared before the loop thread so that, should completions be stuck in its queue when a
  // check fails, they outlive it.
  Tally tally;
  std::vector<Numbered> nodes(kProducers * kPerProducer);
  LoopThread lt;
  tally.loop_thread = lt.id();
  tally.next_seq.assign(kProducers, 0);
  tally.total = kProducers * kPerProducer;
  tally.loop = &lt.loop;
  for (size_t p = 0; p < kProducers; ++p) {
    for (uint64_t i = 0; i < kPerProducer; ++i) {
      Numbered& n = nodes[p * kPerProducer + i];
      n.tally = &tally;
      n.producer = p;
      n.seq = i;
    }
  }
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> producers;
  for (size_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (uint64_t i = 0; i < kPerProducer; ++i) lt.loop.complete(&nodes[p * kPerProducer + i]);
    });
  }
  for (auto& t : producers) t.join();
  ASSERT_TRUE(lt.wait_stopped(kDeadline)) << "completions lost: the loop never saw them all";
  EXPECT_LT(std::chrono::steady_clock::now() - start, kDeadline);
  EXPECT_EQ(tally.ran, tally.total);
  EXPECT_EQ(tally.off_thread, 0u);
  EXPECT_EQ(tally.out_of_order, 0u);
  size_t not_once = 0;
  for (const Numbered& n : nodes) not_once += n.runs != 1;
  EXPECT_EQ(not_once, 0u);
}

class Flag final : public Completion {
 public:
  void run() override {
    ran_on = std::this_thread::get_id();
    done.store(true, std::memory_order_release);
    if (stop_loop != nullptr) stop_loop->stop();
  }
  std::atomic<bool> done{false};
  std::thread::id ran_on;
  EventLoop* stop_loop = nullptr;
};

TEST(Completion, WakesALoopIdleInEpollWait) {
  LoopThread lt;  // no timers, no descriptors: epoll_wait without a timeout
  std::this_thread::sleep_for(milliseconds(50));  // let it fall asleep
  Flag f;
  f.stop_loop = &lt.loop;
  lt.loop.complete(&f);
  ASSERT_TRUE(lt.wait_stopped(milliseconds(5'000))) << "complete() did not wake the loop";
  EXPECT_TRUE(f.done.load());
  EXPECT_EQ(f.ran_on, lt.id());
}

// Ping-pong: each producer completes, waits for its completion to run, completes again. The
// queue is empty at every push and the loop is on its way into (or inside) epoll_wait, which is
// where a wake-up is lost if the empty check or the drain races with a push.
TEST(Completion, NoLostWakeUpWhenPushesRaceTheDrain) {
  constexpr int kProducers = 4;
  constexpr int kRounds = 10'000;
  std::vector<Flag> flags(kProducers);  // outlive the loop thread, like above
  LoopThread lt;
  std::atomic<bool> stuck{false};
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  std::vector<std::thread> producers;
  std::vector<int> rounds(kProducers, 0);
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      Flag& f = flags[p];
      for (int i = 0; i < kRounds && !stuck.load(); ++i) {
        f.done.store(false, std::memory_order_relaxed);
        lt.loop.complete(&f);
        while (!f.done.load(std::memory_order_acquire)) {
          if (std::chrono::steady_clock::now() > deadline) {
            stuck.store(true);
            return;
          }
          std::this_thread::yield();
        }
        ++rounds[p];
      }
    });
  }
  for (auto& t : producers) t.join();
  ASSERT_FALSE(stuck.load()) << "a completion waited for a wake-up that never came";
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(rounds[p], kRounds);
}

// A completion that completes itself again from run() waits for the next drain rather than
// running again inside this one, so a completion that keeps coming back cannot starve I/O.
class Again final : public Completion {
 public:
  void run() override {
    ++runs;
    loop->complete(this);
  }
  EventLoop* loop = nullptr;
  int runs = 0;
};

TEST(Completion, CompletedAgainFromRunWaitsForTheNextDrain) {
  EventLoop loop;
  Again again;
  again.loop = &loop;
  loop.complete(&again);
  EXPECT_EQ(loop.run_completions(), 1u);
  EXPECT_EQ(again.runs, 1);
  EXPECT_EQ(loop.run_completions(), 1u);
  EXPECT_EQ(again.runs, 2);
  // And run() keeps firing timers while it comes back every iteration.
  int timer_fired = 0;
  Timer t([](void* n) { ++*static_cast<int*>(n); }, &timer_fired);
  loop.arm(t, 1);
  Timer stop_timer([](void* l) { static_cast<EventLoop*>(l)->stop(); }, &loop);
  loop.arm(stop_timer, 20);
  loop.run();
  EXPECT_EQ(timer_fired, 1);
  EXPECT_GT(again.runs, 2);
}

TEST(Completion, QueuedAfterRunReturnedRunOnRunCompletions) {
  EventLoop loop;
  loop.stop();
  loop.run();  // returns at once
  Flag a, b;
  loop.complete(&a);
  loop.complete(&b);
  EXPECT_FALSE(a.done.load());
  EXPECT_EQ(loop.run_completions(), 2u);
  EXPECT_TRUE(a.done.load());
  EXPECT_TRUE(b.done.load());
  EXPECT_EQ(loop.run_completions(), 0u);
}

}  // namespace
}  // namespace citadel::core
