// Metrics counted per worker without atomic read-modify-write on the hot path, summed on scrape.
//
// Each metric owns one cache-line-padded slot per worker. A worker increments only its own slot
// with a relaxed load and store (a plain add on x86: no lock prefix, no sharing); the scrape on
// the control thread sums relaxed loads. Metrics live as long as the Registry (the process), so
// counters survive config reloads: a route or cluster keeps its series across snapshots.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace citadel::observe {

struct alignas(64) PaddedCounter {
  std::atomic<uint64_t> v{0};
};

// A monotonically increasing counter. add() only from worker `w`'s own thread.
class Counter {
 public:
  explicit Counter(size_t workers) : slots_(new PaddedCounter[workers + 1]), n_(workers + 1) {}
  void add(size_t w, uint64_t d = 1) {
    auto& s = slots_[w].v;
    s.store(s.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  uint64_t value() const {
    uint64_t sum = 0;
    for (size_t i = 0; i < n_; ++i) sum += slots_[i].v.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  std::unique_ptr<PaddedCounter[]> slots_;
  size_t n_;
};

// A gauge that goes up and down; each worker keeps its own signed delta.
class Gauge {
 public:
  explicit Gauge(size_t workers) : slots_(new PaddedCounter[workers + 1]), n_(workers + 1) {}
  void add(size_t w, int64_t d) {
    auto& s = slots_[w].v;
    s.store(s.load(std::memory_order_relaxed) + static_cast<uint64_t>(d),
            std::memory_order_relaxed);
  }
  int64_t value() const {
    uint64_t sum = 0;
    for (size_t i = 0; i < n_; ++i) sum += slots_[i].v.load(std::memory_order_relaxed);
    return static_cast<int64_t>(sum);
  }

 private:
  std::unique_ptr<PaddedCounter[]> slots_;
  size_t n_;
};

// Latency histogram in microseconds with fixed Prometheus buckets.
class Histogram {
 public:
  static constexpr std::array<uint64_t, 14> kBoundsUs = {
      100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
      5000000};
  explicit Histogram(size_t workers) : slots_(new Slot[workers + 1]), n_(workers + 1) {}
  void observe(size_t w, uint64_t us) {
    Slot& s = slots_[w];
    size_t b = 0;
    while (b < kBoundsUs.size() && us > kBoundsUs[b]) ++b;
    bump(s.buckets[b], 1);
    bump(s.sum_us, us);
  }
  // Cumulative bucket counts (size kBoundsUs.size() + 1, last = +Inf), sum and count.
  void snapshot(std::vector<uint64_t>& cumulative, uint64_t& sum_us) const;

 private:
  struct alignas(64) Slot {
    std::array<std::atomic<uint64_t>, kBoundsUs.size() + 1> buckets{};
    std::atomic<uint64_t> sum_us{0};
  };
  static void bump(std::atomic<uint64_t>& a, uint64_t d) {
    a.store(a.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  std::unique_ptr<Slot[]> slots_;
  size_t n_;
};

// Owns every metric; hands out stable pointers by (name, labels). Creation and rendering take a
// mutex and happen on the control thread (snapshot build, scrape), never on the request path.
class Registry {
 public:
  explicit Registry(size_t workers) : workers_(workers) {}

  Counter* counter(const std::string& name, const std::string& help, const std::string& labels = "");
  Gauge* gauge(const std::string& name, const std::string& help, const std::string& labels = "");
  Histogram* histogram(const std::string& name, const std::string& help,
                       const std::string& labels = "");
  // A gauge computed at scrape time (endpoint health, build info).
  using Collector = std::function<void(std::string& out)>;
  void add_collector(Collector c);

  // Prometheus text exposition format 0.0.4.
  std::string render() const;
  size_t workers() const { return workers_; }

 private:
  template <class T>
  struct Family {
    std::string help;
    std::map<std::string, std::unique_ptr<T>> series;  // labels -> metric
  };
  size_t workers_;
  mutable std::mutex mu_;
  std::map<std::string, Family<Counter>> counters_;
  std::map<std::string, Family<Gauge>> gauges_;
  std::map<std::string, Family<Histogram>> histograms_;
  std::vector<Collector> collectors_;
};

}  // namespace citadel::observe
