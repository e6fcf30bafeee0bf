#include "core/blocking_pool.h"

#include <pthread.h>

#include <algorithm>
#include <cassert>
#include <string>
#include <system_error>

namespace citadel::core {

BlockingPool::BlockingPool(size_t threads, size_t queue_capacity)
    : thread_count_(std::max<size_t>(threads, 1)),
      // Vyukov's ring needs two cells: with one, a full cell reads as free on the next lap.
      capacity_(std::max<size_t>(queue_capacity, 2)),
      cells_(new Cell[capacity_]) {
  for (size_t i = 0; i < capacity_; ++i) {
    cells_[i].seq.store(i, std::memory_order_relaxed);
    cells_[i].job = nullptr;
  }
}

BlockingPool::~BlockingPool() { stop(); }

Status BlockingPool::start() {
  threads_.reserve(thread_count_);
  for (size_t i = 0; i < thread_count_; ++i) {
    try {  // std::thread reports a failed pthread_create by throwing
      threads_.emplace_back([this] { work(); });
    } catch (const std::system_error& e) {
      stop();
      return Status::error(std::string("blocking pool: cannot start thread: ") + e.what());
    }
    // A name for top and gdb; failing to set it changes nothing.
    pthread_setname_np(threads_.back().native_handle(), "citadel-block");
  }
  return {};
}

bool BlockingPool::submit(BlockingJob* job) {
  // A job without a loop has nowhere to resume: a programming error, not input.
  assert(job->loop != nullptr && "BlockingJob::loop must be set before submit()");
  job->cancelled_ = false;  // a job object may be reused for the next request
  // seq_cst pairs with stop(): either this sees stopping_, or stop() sees this submit in
  // submitting_ and waits for its enqueue before draining the ring.
  submitting_.fetch_add(1, std::memory_order_seq_cst);
  // Counted before the job is visible, so that a pool thread's decrement never goes first.
  depth_.fetch_add(1, std::memory_order_relaxed);
  if (stopping_.load(std::memory_order_seq_cst) || !enqueue(job)) {
    depth_.fetch_sub(1, std::memory_order_relaxed);
    submitting_.fetch_sub(1, std::memory_order_release);
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  ready_.release();
  submitting_.fetch_sub(1, std::memory_order_release);
  return true;
}

void BlockingPool::stop() {
  stopping_.store(true, std::memory_order_seq_cst);
  // Submits that missed the flag finish their enqueue within a few instructions.
  while (submitting_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  // One token per thread: each thread leaves at the first token it takes after the flag, so
  // every thread wakes, including those asleep on an empty queue.
  if (!threads_.empty()) ready_.release(static_cast<std::ptrdiff_t>(threads_.size()));
  for (auto& t : threads_) t.join();
  threads_.clear();
  // Nothing else touches the ring now: cancel what is left, so that its owners can free it.
  while (BlockingJob* job = dequeue()) {
    depth_.fetch_sub(1, std::memory_order_relaxed);
    job->cancelled_ = true;
    job->loop->complete(job);
  }
}

void BlockingPool::work() {
  for (;;) {
    ready_.acquire();
    if (stopping_.load(std::memory_order_acquire)) return;
    BlockingJob* job;
    // The token promises a published job, but the ring hands jobs out by position: the slot
    // before it may belong to a producer between claiming and publishing. That window is a few
    // instructions (longer only if that producer is preempted).
    while ((job = dequeue()) == nullptr) std::this_thread::yield();
    depth_.fetch_sub(1, std::memory_order_relaxed);
    job->run_blocking();
    // The loop takes over the job here: not a byte of it may be touched after this call.
    job->loop->complete(job);
  }
}

// Dmitry Vyukov's bounded MPMC queue (1024cores.net), with a modulo instead of a mask so that
// the capacity is exactly what was configured.
bool BlockingPool::enqueue(BlockingJob* job) {
  uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
  Cell* cell;
  for (;;) {
    cell = &cells_[pos % capacity_];
    uint64_t seq = cell->seq.load(std::memory_order_acquire);
    auto dif = static_cast<int64_t>(seq - pos);
    if (dif == 0) {
      if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
    } else if (dif < 0) {
      return false;  // the slot still holds the job from one lap ago: full
    } else {
      pos = enqueue_pos_.load(std::memory_order_relaxed);  // another producer took `pos`
    }
  }
  cell->job = job;
  cell->seq.store(pos + 1, std::memory_order_release);
  return true;
}

BlockingJob* BlockingPool::dequeue() {
  uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
  Cell* cell;
  for (;;) {
    cell = &cells_[pos % capacity_];
    uint64_t seq = cell->seq.load(std::memory_order_acquire);
    auto dif = static_cast<int64_t>(seq - (pos + 1));
    if (dif == 0) {
      if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
    } else if (dif < 0) {
      return nullptr;  // empty, or its producer has not published yet
    } else {
      pos = dequeue_pos_.load(std::memory_order_relaxed);  // another consumer took `pos`
    }
  }
  BlockingJob* job = cell->job;
  cell->seq.store(pos + capacity_, std::memory_order_release);  // free for the next lap
  return job;
}

}  // namespace citadel::core
