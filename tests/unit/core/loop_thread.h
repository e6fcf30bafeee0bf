// Test harness: one EventLoop running on its own thread, with bounded waits for it to stop.
#pragma once

#include <chrono>
#include <future>
#include <thread>

#include "core/event_loop.h"

namespace citadel::core::testing {

class LoopThread {
 public:
  LoopThread() {
    thread_ = std::thread([this] {
      id_.set_value(std::this_thread::get_id());
      loop.run();
      stopped_.set_value();
    });
    loop_id_ = id_.get_future().get();
  }
  // Stops the loop (if a test did not) and hands leftover completions to their owners.
  ~LoopThread() {
    loop.stop();
    thread_.join();
    loop.run_completions();
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // True when run() returned within `timeout` (a test's run() stops the loop when done).
  bool wait_stopped(std::chrono::milliseconds timeout) {
    return stopped_future_.wait_for(timeout) == std::future_status::ready;
  }
  std::thread::id id() const { return loop_id_; }

  EventLoop loop;

 private:
  std::promise<std::thread::id> id_;
  std::promise<void> stopped_;
  std::future<void> stopped_future_ = stopped_.get_future();
  std::thread::id loop_id_;
  std::thread thread_;
};

}  // namespace citadel::core::testing
