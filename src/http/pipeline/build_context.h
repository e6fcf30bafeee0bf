// What a filter's or service's parser gets when it builds a factory: the worker count, the
// metrics registry, and state that outlives one config snapshot.
//
// Factories are built on the control thread, once for every snapshot: at start, on each reload
// and on each DNS refresh (a snapshot that changes no cluster is built and dropped). A build
// may be thrown away (a reload refused after it, see docs/architecture.md). Whatever a factory
// registers or keeps here is therefore built again and again, and must come back the same:
//   - Metrics are registered here, never on the request path. A series is keyed by name and
//     labels and lives as long as the process, so the factory of the next snapshot gets the same
//     counter and counts on (observe/metrics.h).
//   - state<T>(key, make) returns the object an earlier snapshot's factory made under the same
//     key, as long as some snapshot still holds it, or else a new one from make(). Per-worker
//     state (a rate limiter's buckets, a cache index) is a PerWorker<T> kept this way: the
//     filters of the old and the new snapshot share it during a reload, worker i touching only
//     at(i) from worker i's thread, so no lock is needed. The object dies with the last snapshot
//     that used it; its destructor may run on any thread.
//
// A parser also runs when a config is only checked (load, `citadel validate`, a refused
// reload): checking() is true, metrics go to a scratch registry and state() hands out a fresh
// object that nothing keeps. A parser that would open files, connect or start work does none of
// it when checking.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

#include "observe/metrics.h"

namespace citadel::pipeline {

// One T per worker, each on cache lines of its own (no false sharing between workers).
template <class T>
class PerWorker {
 public:
  // Every slot is constructed from the same arguments.
  template <class... Args>
  explicit PerWorker(size_t workers, const Args&... args) {
    slots_.reserve(workers);
    for (size_t i = 0; i < workers; ++i) slots_.push_back(std::make_unique<Slot>(args...));
  }
  // Worker `worker`'s own slot; only that worker's thread may use it.
  T& at(size_t worker) { return slots_[worker]->value; }
  const T& at(size_t worker) const { return slots_[worker]->value; }
  size_t size() const { return slots_.size(); }

 private:
  struct alignas(64) Slot {
    template <class... Args>
    explicit Slot(const Args&... args) : value(args...) {}
    T value;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
};

class BuildContext {
 public:
  // How many workers run: per-worker state has this many slots, WorkerContext::index() < it.
  virtual size_t workers() const = 0;
  virtual observe::Registry& metrics() = 0;
  // True when the config is only being checked (see above).
  virtual bool checking() const = 0;
  // The route whose filter or target is built; "" for listener filters (they serve every
  // route). For metric labels.
  virtual std::string_view route() const = 0;

  // The object kept under `key` (scoped by the extension's name: two extensions never share
  // one), or a new one from make() (which returns std::shared_ptr<T>). A key once used for one
  // type and then for another gets a new object.
  template <class T, class Make>
  std::shared_ptr<T> state(std::string_view key, Make&& make) {
    std::shared_ptr<void> found = find_state(key, std::type_index(typeid(T)));
    if (found) return std::static_pointer_cast<T>(found);
    std::shared_ptr<T> made = std::forward<Make>(make)();
    keep_state(key, std::type_index(typeid(T)), made);
    return made;
  }

 protected:
  ~BuildContext() = default;
  virtual std::shared_ptr<void> find_state(std::string_view key, std::type_index type) = 0;
  virtual void keep_state(std::string_view key, std::type_index type,
                          std::shared_ptr<void> object) = 0;
};

}  // namespace citadel::pipeline
