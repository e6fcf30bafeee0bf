// Blocking work for a stream: `work` runs on the process's blocking pool, `done` back on the
// stream's worker, and only while the stream is still the one that asked (a stream recycled in
// the meantime never sees a late result).
//
//   bool queued = pipeline::run_blocking(ctx.worker(), ctx.handle(),
//       [pw = std::string(password)]() { return argon2_hash(pw); },   // pool thread
//       [this](std::string hash) { ...; ctx_->continue_request(); }); // worker, stream alive
//   if (!queued) ctx.send_local_reply(503, "busy\n");
//
// The job lives on the heap (a stream may end while its job runs, and its arena is reused), and
// frees itself after `done` or after dropping a stale or cancelled result. A job whose stream
// has ended before a pool thread takes it up is skipped (`work` never runs). `work` must not touch
// the stream or anything else owned by the worker's loop; `done` must check nothing more than a
// filter or handler callback would. A full pool refuses at once (false): answer 503, never wait.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>

#include "core/blocking_pool.h"
#include "http/pipeline/stream_info.h"

namespace citadel::pipeline {

template <class Work, class Done>
class StreamJob final : public core::BlockingJob {
 public:
  using Result = std::invoke_result_t<Work&>;
  StreamJob(StreamHandle handle, Work work, Done done)
      : handle_(handle), work_(std::move(work)), done_(std::move(done)) {}

  void run_blocking() override {
    // A client that asked and left must not keep the pool busy (POST a login, disconnect,
    // repeat: dead Argon2id hashes would queue ahead of live users).
    if (handle_.probably_gone()) return;
    result_.emplace(work_());
  }
  void run() override {
    // On the loop: deliver only to the same stream, and free the job either way.
    if (!cancelled() && result_.has_value() && handle_.valid()) done_(std::move(*result_));
    delete this;
  }

 private:
  StreamHandle handle_;
  Work work_;
  Done done_;
  std::optional<Result> result_;
};

// False when the worker has no pool or the pool is full or stopping: nothing was queued and
// nothing will be called.
template <class Work, class Done>
bool run_blocking(WorkerContext& worker, StreamHandle handle, Work work, Done done) {
  core::BlockingPool* pool = worker.blocking_pool();
  if (pool == nullptr) return false;
  auto* job = new StreamJob<Work, Done>(handle, std::move(work), std::move(done));
  job->loop = &worker.loop();
  if (!pool->submit(job)) {
    delete job;
    return false;
  }
  return true;
}

}  // namespace citadel::pipeline
