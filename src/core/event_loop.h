// One epoll event loop per thread.
//
// Every worker thread and the control thread run one EventLoop. File descriptors are registered
// once, edge-triggered, for both directions: there is no epoll_ctl per request.
#pragma once

#include <atomic>
#include <cstddef>
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

// The result of asynchronous work, handed back to a loop with EventLoop::complete() from any
// thread and run there. Intrusive: the queue links completions through next_, so completing
// allocates nothing. Owned by whoever created it, which must keep it alive until run() has been
// called (run() may free it: the loop does not touch a completion after calling run()).
// A completion is queued at most once at a time; it may be completed again from its own run().
class Completion {
 public:
  // On the loop's thread, once per complete().
  virtual void run() = 0;

 protected:
  ~Completion() = default;

 private:
  friend class EventLoop;
  std::atomic<Completion*> next_{nullptr};
};

// Thread contract:
// - Any thread: complete() (data-path results: lock-free, no allocation), post() (rare
//   control-plane work: takes a mutex and allocates), stop().
// - The loop's own thread: everything else, including add()/remove(), schedule(), timers, and
//   run() itself. After run() has returned, the thread that owns the loop may call
//   run_completions() and clear_graveyard() to finish shutdown.
//
// One iteration of run(): epoll_wait; I/O handlers (each followed by its tasks); tasks;
// completions (FIFO per producer); timers; posted functions; tasks; graveyard. Completions run
// after I/O so that a result and the reads of the same iteration are both seen, and before the
// last round of tasks so that the writes a completion schedules leave in the same iteration.
class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers `fd` edge-triggered for `events` (EPOLLIN | EPOLLOUT | EPOLLRDHUP by default).
  // Moves `fd`'s registration to `handler` (events as add()): a connection whose codec is
  // chosen after a TLS handshake keeps its registration, one epoll_ctl.
  Status rebind(int fd, IoHandler* handler, uint32_t events = 0);
  Status add(int fd, IoHandler* handler, uint32_t events = 0);
  void remove(int fd);

  // Runs until stop(). Dispatches I/O, fires timers, runs posted tasks.
  void run();
  // Any thread: makes run() return after the current iteration.
  void stop();
  // Any thread: runs `fn` on the loop's thread soon. For rare control-plane work only: it takes
  // a mutex and allocates. Data-path results use complete().
  void post(std::function<void()> fn);

  // Any thread: queues `c` to run on the loop's thread in the loop's next completion round.
  // Lock-free (one compare-and-swap loop on the queue head) and allocation-free. Wakes the loop
  // through its eventfd only when the queue was empty, so under load there is at most one write()
  // per round however many completions arrive. Completions from one thread run in the order that
  // thread completed them. Completions still queued when run() returns stay queued (see
  // run_completions()); completing on a destroyed loop is a use-after-free.
  void complete(Completion* c);

  // Loop thread (or its owner after run() returned): runs the completions queued so far, in
  // FIFO order per producer, and returns how many ran. Completions queued while these run wait
  // for the next call. run() calls it once per iteration; shutdown calls it to hand the last
  // results (a stopped BlockingPool's cancelled jobs) to their owners.
  size_t run_completions();

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
  // Completion queue: a Treiber stack that producers push onto and the loop takes whole with one
  // exchange (no ABA: nodes are never popped one by one), then reverses to FIFO order.
  std::atomic<Completion*> completions_{nullptr};
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  bool stop_requested_ = false;  // guarded by posted_mu_
};

uint64_t monotonic_ms();

}  // namespace citadel::core
