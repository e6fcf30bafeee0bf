#include "core/event_loop.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

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
  Timer stop_timer([](void* l) { static_cast<EventLoop*>(l)->stop(); }, &loop);
  loop.arm(stop_timer, 60);
  loop.run();
  other.join();
  EXPECT_TRUE(posted);
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace citadel::core
