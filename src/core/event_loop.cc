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

// The eventfd that post() and stop() write to; reading it only clears the wake-up.
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
  run_tasks();
  while (!stopping_) {
    int timeout = tasks_.empty() ? timers_.next_timeout_ms(now_ms_) : 0;
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
    timers_.advance(now_ms_);
    if (woken) run_posted();
    run_tasks();
    // A task still queued may belong to a closed object in the graveyard: free the dead only
    // once no task can name them.
    if (tasks_.empty()) graveyard_.clear();
  }
}

}  // namespace citadel::core
