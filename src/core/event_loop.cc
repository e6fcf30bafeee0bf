#include "core/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace citadel::core {

uint64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// The eventfd that post(), stop() and complete() write to; reading it only clears the wake-up.
class EventLoop::Waker final : public IoHandler {
 public:
  explicit Waker(int fd) : fd_(fd) {}
  void on_io(uint32_t) override {
    uint64_t v;
    while (::read(fd_, &v, sizeof v) > 0) {
    }
  }

 private:
  int fd_;
};

EventLoop::EventLoop() : now_ms_(monotonic_ms()), timers_(now_ms_) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  // Start-up may fail fast: without these the process cannot do anything.
  if (epfd_ < 0 || wakefd_ < 0) {
    std::perror("citadel: epoll/eventfd");
    std::abort();
  }
  static_assert(sizeof(void*) == sizeof(uint64_t));
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.ptr = nullptr;  // nullptr marks the waker
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
}

EventLoop::~EventLoop() {
  graveyard_.clear();
  if (wakefd_ >= 0) ::close(wakefd_);
  if (epfd_ >= 0) ::close(epfd_);
}

Status EventLoop::add(int fd, IoHandler* handler, uint32_t events) {
  epoll_event ev{};
  ev.events = (events != 0 ? events : (EPOLLIN | EPOLLOUT | EPOLLRDHUP)) | EPOLLET;
  ev.data.ptr = handler;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Status::error(std::string("epoll_ctl: ") + std::strerror(errno));
  }
  return {};
}

Status EventLoop::rebind(int fd, IoHandler* handler, uint32_t events) {
  epoll_event ev{};
  ev.events = (events != 0 ? events : (EPOLLIN | EPOLLOUT | EPOLLRDHUP)) | EPOLLET;
  ev.data.ptr = handler;
  if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
    return Status::error(std::string("epoll_ctl: ") + std::strerror(errno));
  }
  return {};
}

void EventLoop::remove(int fd) { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::update_time() { now_ms_ = monotonic_ms(); }

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wakefd_, &one, sizeof one);
}

void EventLoop::stop() {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    stop_requested_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wakefd_, &one, sizeof one);
}

void EventLoop::complete(Completion* c) {
  Completion* head = completions_.load(std::memory_order_relaxed);
  do {
    c->next_.store(head, std::memory_order_relaxed);
    // Release: run_completions() acquires the head, which makes this node and everything its
    // producer wrote before completing it visible there. Later pushes are read-modify-writes,
    // so they continue this release sequence for the nodes below them.
  } while (!completions_.compare_exchange_weak(head, c, std::memory_order_release,
                                               std::memory_order_relaxed));
  // Only the push that made the queue non-empty wakes the loop: the loop takes the whole queue
  // with one exchange, so a push that found it non-empty is seen by a drain that has not
  // happened yet, and that drain is already announced by the earlier write.
  if (head == nullptr) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakefd_, &one, sizeof one);
  }
}

size_t EventLoop::run_completions() {
  // The cheap check first: an idle iteration costs one load, not a locked exchange.
  if (completions_.load(std::memory_order_acquire) == nullptr) return 0;
  Completion* lifo = completions_.exchange(nullptr, std::memory_order_acquire);
  // The stack holds the newest first: reverse it so each producer's completions run in order.
  Completion* fifo = nullptr;
  while (lifo != nullptr) {
    Completion* next = lifo->next_.load(std::memory_order_relaxed);
    lifo->next_.store(fifo, std::memory_order_relaxed);
    fifo = lifo;
    lifo = next;
  }
  size_t ran = 0;
  while (fifo != nullptr) {
    // Read the link first: run() may free its completion or complete it again.
    Completion* next = fifo->next_.load(std::memory_order_relaxed);
    fifo->run();
    fifo = next;
    ++ran;
  }
  return ran;
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    batch.swap(posted_);
    if (stop_requested_) stopping_ = true;
  }
  for (auto& fn : batch) fn();
}

void EventLoop::run_tasks() {
  // A few rounds: tasks scheduled by tasks (a flush after a read) run now, but a connection
  // that keeps rescheduling itself cannot starve the others; the rest waits for the next
  // iteration, whose epoll_wait then does not block.
  for (int round = 0; round < 4 && !tasks_.empty(); ++round) {
    running_tasks_.swap(tasks_);
    for (LoopTask* t : running_tasks_) {
      t->scheduled_ = false;
      t->run_task();
    }
    running_tasks_.clear();
  }
}

void EventLoop::run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  Waker waker(wakefd_);
  run_posted();
  run_completions();
  run_tasks();
  while (!stopping_) {
    // Completions pushed by this thread (a completion that completes again) announced themselves
    // through the eventfd already; the load only spares that round trip.
    bool busy = !tasks_.empty() || completions_.load(std::memory_order_relaxed) != nullptr;
    int timeout = busy ? 0 : timers_.next_timeout_ms(now_ms_);
    int n = epoll_wait(epfd_, events, kMaxEvents, timeout);
    update_time();
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      auto* h = static_cast<IoHandler*>(events[i].data.ptr);
      if (h == nullptr) {
        waker.on_io(events[i].events);
        woken = true;
      } else {
        h->on_io(events[i].events);
        run_tasks();  // flush what this event produced before serving the next one
      }
    }
    run_tasks();
    run_completions();
    timers_.advance(now_ms_);
    if (woken) run_posted();
    run_tasks();
    // A task still queued may belong to a closed object in the graveyard: free the dead only
    // once no task can name them.
    if (tasks_.empty()) graveyard_.clear();
  }
}

}  // namespace citadel::core
