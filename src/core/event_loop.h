// One epoll event loop per thread.
//
// Every worker thread and the control thread run one EventLoop. All methods except post() and
// stop() must be called on the loop's own thread. File descriptors are registered once,
// edge-triggered, for both directions: there is no epoll_ctl per request.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/status.h"
#include "core/timer_wheel.h"

namespace citadel::core {

// Receives readiness for one registered descriptor (EPOLLIN/EPOLLOUT/EPOLLRDHUP/EPOLLERR bits).
class IoHandler {
 public:
  virtual void on_io(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

// Objects whose destruction must wait until the current batch of events has been dispatched
// (another event in the same batch may still name them).
class Deferred {
 public:
  virtual ~Deferred() = default;
};

// Work to run once after the current batch of events (flushing a connection's writes so that a
// response head and body leave in one write). Scheduling twice before it runs is a no-op.
class LoopTask {
 public:
  virtual void run_task() = 0;

 protected:
  ~LoopTask() = default;

 private:
  friend class EventLoop;
  bool scheduled_ = false;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers `fd` edge-triggered for `events` (EPOLLIN | EPOLLOUT | EPOLLRDHUP by default).
  Status add(int fd, IoHandler* handler, uint32_t events = 0);
  void remove(int fd);

  // Runs until stop(). Dispatches I/O, fires timers, runs posted tasks.
  void run();
  // Any thread: makes run() return after the current iteration.
  void stop();
  // Any thread: runs `fn` on the loop's thread soon. For rare control-plane work only.
  void post(std::function<void()> fn);

  // Runs `task` after the current batch of events (loop thread only). The task must stay alive
  // until then: owners that close use defer_delete().
  void schedule(LoopTask* task) {
    if (!task->scheduled_) {
      task->scheduled_ = true;
      tasks_.push_back(task);
    }
  }

  // Destroys `obj` after the current batch of events, once no scheduled task is pending (loop
  // thread only). A LoopTask owner that closes must make run_task() a no-op when closed.
  void defer_delete(std::unique_ptr<Deferred> obj) { graveyard_.push_back(std::move(obj)); }

  // Destroys deferred objects now (shutdown, after run() has returned).
  void clear_graveyard() { graveyard_.clear(); }

  // Monotonic milliseconds, cached once per iteration.
  uint64_t now_ms() const { return now_ms_; }
  void update_time();
  TimerWheel& timers() { return timers_; }
  void arm(Timer& t, uint64_t delay_ms) { timers_.arm(t, now_ms_ + delay_ms); }

 private:
  class Waker;
  void run_posted();

  int epfd_ = -1;
  int wakefd_ = -1;
  uint64_t now_ms_ = 0;
  TimerWheel timers_;
  bool stopping_ = false;
  void run_tasks();
  std::vector<LoopTask*> tasks_;
  std::vector<LoopTask*> running_tasks_;
  std::vector<std::unique_ptr<Deferred>> graveyard_;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  bool stop_requested_ = false;  // guarded by posted_mu_
};

uint64_t monotonic_ms();

}  // namespace citadel::core
