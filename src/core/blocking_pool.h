// A few threads for work that must block (a synchronous store driver, a file read, a password
// hash), so that worker loops never do.
//
// A worker submits a BlockingJob; a pool thread calls run_blocking(), then hands the job back
// to the job's loop with EventLoop::complete(), where run() resumes the request. The queue is
// bounded: when it is full, submit() refuses at once and the caller answers 503 rather than
// wait.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <semaphore>
#include <thread>
#include <vector>

#include "core/event_loop.h"
#include "core/status.h"

namespace citadel::core {

// One piece of blocking work and its result. Intrusive and owned by whoever submits it: the
// pool never allocates or frees a job. Not in a request's arena: a stream may end and be
// recycled while its job runs (pipeline::run_blocking() puts jobs on the heap). The owner
// keeps it alive until run() has been called on `loop`; run() is always called exactly once per
// accepted submit(), also when the pool stopped first (then cancelled() is true and
// run_blocking() never ran), so run() is where the owner lets go of it.
//
// run_blocking() runs on a pool thread and may block; it must not touch loop-owned state. run()
// runs on `loop`'s thread; a job working for a stream carries the stream's handle (pointer +
// generation, pipeline::StreamHandle) and drops its result there when the stream was recycled.
class BlockingJob : public Completion {
 public:
  virtual void run_blocking() = 0;

  // On the loop's thread, in run(): true when the pool stopped before this job ran.
  bool cancelled() const { return cancelled_; }

  EventLoop* loop = nullptr;  // where run() resumes; set before submit()

 protected:
  ~BlockingJob() = default;

 private:
  friend class BlockingPool;
  bool cancelled_ = false;
};

// Thread contract: start(), stop() and the destructor on the thread that owns the pool (the
// control thread); submit() and the counters from any thread. submit() never blocks and never
// takes a lock: a bounded lock-free ring (Vyukov's MPMC queue) holds the jobs and a semaphore
// wakes the pool threads.
//
// Shutdown: stop() lets jobs already running finish (their run() follows on their loop as
// usual), then cancels the jobs still queued: each is completed on its loop with cancelled()
// set, without run_blocking(). Loops that have stopped by then hold these in their completion
// queue: their owners call EventLoop::run_completions() so that every job reaches its owner.
class BlockingPool {
 public:
  static constexpr size_t kDefaultThreads = 4;
  static constexpr size_t kDefaultQueueCapacity = 256;

  // `threads` is at least 1 and `queue_capacity` at least 2 (smaller values are raised).
  explicit BlockingPool(size_t threads = kDefaultThreads,
                        size_t queue_capacity = kDefaultQueueCapacity);
  ~BlockingPool();  // stop()
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Starts the threads. Start-up may fail (no thread to be had): the error names the reason and
  // the threads already started are stopped again.
  Status start();

  // Any thread, never blocks: queues `job` (job->loop must be set) and returns true, or returns
  // false at once when the queue is full or the pool is stopping; then the job was not taken,
  // no callback follows, and the caller answers (503) and keeps ownership.
  bool submit(BlockingJob* job);

  // Owner thread: waits for running jobs, cancels queued ones (see above), joins the threads.
  // Further submit() calls return false. Idempotent.
  void stop();

  // Any thread: true once stop() has begun. A long run_blocking() may poll it to give up early.
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  // Jobs queued and not yet picked up by a pool thread (approximate while submits race).
  size_t depth() const { return depth_.load(std::memory_order_relaxed); }
  // Submissions refused since construction (queue full or pool stopping).
  uint64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }
  size_t thread_count() const { return thread_count_; }

 private:
  // One slot of the ring. `seq` tells whose turn it is: == position, free for the producer of
  // that position; == position + 1, holding its job for the consumer.
  struct Cell {
    std::atomic<uint64_t> seq;
    BlockingJob* job;
  };

  bool enqueue(BlockingJob* job);
  BlockingJob* dequeue();
  void work();

  const size_t thread_count_;
  const size_t capacity_;
  std::unique_ptr<Cell[]> cells_;
  // Producers and consumers each on their own cache line.
  alignas(64) std::atomic<uint64_t> enqueue_pos_{0};
  alignas(64) std::atomic<uint64_t> dequeue_pos_{0};
  alignas(64) std::atomic<size_t> depth_{0};
  std::atomic<uint64_t> rejected_{0};
  // submit() calls between their stopping_ check and their enqueue: stop() waits for them to
  // drain so that no job lands in the ring after stop() emptied it.
  std::atomic<int> submitting_{0};
  std::atomic<bool> stopping_{false};
  // One token per queued job, plus one per thread at stop().
  std::counting_semaphore<> ready_{0};
  std::vector<std::thread> threads_;
};

}  // namespace citadel::core
