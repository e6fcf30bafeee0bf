// What the pipeline gives filters and handlers about their stream and worker, besides the
// messages themselves: the worker they run on, a handle for completions that arrive later, and
// the record the access log is written from. Worker thread only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/blocking_pool.h"
#include "core/event_loop.h"
#include "observe/log.h"

namespace citadel::http::client {
class HttpClient;
}

namespace citadel::pipeline {

// The worker a stream runs on. Filters and handlers keep per-worker state keyed by index().
class WorkerContext {
 public:
  virtual size_t index() const = 0;
  virtual core::EventLoop& loop() = 0;
  // The process's pool for work that must block (see blocking.h); nullptr when there is none.
  virtual core::BlockingPool* blocking_pool() = 0;
  // The worker's HTTP client (http/client/http_client.h): outgoing requests from this worker's
  // loop, e.g. a key fetch or a webhook. Lives as long as the worker.
  virtual http::client::HttpClient& http_client() = 0;
  // The process's error log (thread-safe, levelled): a filter or service reports what an
  // operator must see (a key set that fails to load, a backend that refuses) without a side
  // door into the proxy.
  virtual observe::ErrorLog& log() = 0;

 protected:
  ~WorkerContext() = default;
};

// A stream as it may be named by work that completes later (a Redis reply, a blocking job).
// Streams are recycled: a handle taken for one request must not reach the next request that
// reuses the object, so it carries the generation it was taken at.
class HandleTarget {
 public:
  uint64_t generation() const { return generation_.load(std::memory_order_relaxed); }

 protected:
  ~HandleTarget() = default;
  // Called when the object starts a new request or its stream ends: every earlier handle goes
  // stale. Loop thread only; other threads may read the generation (relaxed, a hint: see
  // StreamHandle::probably_gone).
  void next_generation() {
    generation_.store(generation_.load(std::memory_order_relaxed) + 1,
                      std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> generation_{1};
};

struct StreamHandle {
  HandleTarget* target = nullptr;
  uint64_t generation = 0;
  // True while the stream the handle was taken from is still in progress. Loop thread only.
  bool valid() const { return target != nullptr && target->generation() == generation; }
  // From another thread (a blocking job about to start): true when the stream has certainly
  // ended, so that expensive work for it (an Argon2id hash) can be skipped. False may still be
  // a stream that ends meanwhile: the result is checked with valid() on the loop as always.
  // Streams are recycled, never freed while the blocking pool runs, so `target` stays readable.
  bool probably_gone() const { return target == nullptr || target->generation() != generation; }
};

// Facts about one request that filters and the target record for the access log and metrics.
// Strings must outlive the stream (literals, config strings, or the stream's arena).
struct StreamInfo {
  std::string_view upstream_address;  // the endpoint of the last upstream attempt
  uint64_t upstream_us = 0;           // time to the upstream's response head
  std::string_view termination;       // why the stream ended early, if it did
  bool failed = false;                // the response was cut short after its head
  void reset() { *this = StreamInfo(); }
};

}  // namespace citadel::pipeline
