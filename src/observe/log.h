// Logging: a levelled error log, and the JSON access log written off the worker threads.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace citadel::observe {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// The error log: human-oriented lines on stderr, one mutex. Not for the request hot path (it is
// used for rare events: start, reload, ejections, failures). Any thread.
class ErrorLog {
 public:
  void set_level(LogLevel l) { level_.store(l, std::memory_order_relaxed); }
  bool enabled(LogLevel l) const { return l >= level_.load(std::memory_order_relaxed); }
  void log(LogLevel l, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

 private:
  std::atomic<LogLevel> level_{LogLevel::kInfo};
  std::mutex mu_;
};

LogLevel parse_level(const std::string& s);

// Single-producer single-consumer byte ring: a worker appends whole lines, the writer thread
// drains them. Lines that do not fit are dropped and counted (the worker never waits).
class LogRing {
 public:
  explicit LogRing(size_t capacity = 1 << 20) : buf_(new char[capacity]), cap_(capacity) {}
  bool push(std::string_view line);
  // Drains into `out`; returns bytes taken.
  size_t drain(std::string& out);
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<char[]> buf_;
  size_t cap_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  std::atomic<uint64_t> dropped_{0};
};

// Owns one ring per worker and the thread that writes them to stdout or a file. reopen() (from
// SIGUSR1, for logrotate) makes the writer reopen its file.
class AccessLogWriter {
 public:
  AccessLogWriter(size_t workers, std::string path);
  ~AccessLogWriter();
  LogRing& ring(size_t worker) { return *rings_[worker]; }
  void reopen() { reopen_.store(true, std::memory_order_relaxed); }
  // Lines dropped because a worker's ring was full (the writer could not keep up).
  uint64_t dropped() const {
    uint64_t n = 0;
    for (const auto& r : rings_) n += r->dropped();
    return n;
  }
  void start();
  void stop();

 private:
  void run();
  void open_file();
  std::vector<std::unique_ptr<LogRing>> rings_;
  std::string path_;
  int fd_ = 1;
  std::atomic<bool> reopen_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Appends `s` JSON-escaped (without quotes) to `out`.
void json_escape(std::string_view s, std::string& out);

}  // namespace citadel::observe
