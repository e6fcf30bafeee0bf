#include "observe/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace citadel::observe {

void ErrorLog::log(LogLevel l, const char* fmt, ...) {
  if (!enabled(l)) return;
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char when[40];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &t);
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(stderr, "%s.%03ldZ [%s] %s\n", when, ts.tv_nsec / 1'000'000,
               kNames[static_cast<int>(l)], msg);
  std::fflush(stderr);
}

LogLevel parse_level(const std::string& s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

bool LogRing::push(std::string_view line) {
  uint64_t head = head_.load(std::memory_order_relaxed);
  uint64_t tail = tail_.load(std::memory_order_acquire);
  if (cap_ - (head - tail) < line.size()) {
    dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }
  size_t pos = head % cap_;
  size_t first = std::min(line.size(), cap_ - pos);
  std::memcpy(buf_.get() + pos, line.data(), first);
  std::memcpy(buf_.get(), line.data() + first, line.size() - first);
  head_.store(head + line.size(), std::memory_order_release);
  return true;
}

size_t LogRing::drain(std::string& out) {
  uint64_t tail = tail_.load(std::memory_order_relaxed);
  uint64_t head = head_.load(std::memory_order_acquire);
  size_t n = head - tail;
  if (n == 0) return 0;
  size_t pos = tail % cap_;
  size_t first = std::min(n, cap_ - pos);
  out.append(buf_.get() + pos, first);
  out.append(buf_.get(), n - first);
  tail_.store(head, std::memory_order_release);
  return n;
}

AccessLogWriter::AccessLogWriter(size_t workers, std::string path) : path_(std::move(path)) {
  for (size_t i = 0; i < workers; ++i) rings_.push_back(std::make_unique<LogRing>());
}

AccessLogWriter::~AccessLogWriter() { stop(); }

void AccessLogWriter::open_file() {
  if (path_ == "-" || path_.empty()) {
    fd_ = 1;
    return;
  }
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "citadel: cannot open access log %s\n", path_.c_str());
    return;  // keep the old descriptor
  }
  if (fd_ > 2) ::close(fd_);
  fd_ = fd;
}

void AccessLogWriter::start() {
  open_file();
  thread_ = std::thread([this] { run(); });
}

void AccessLogWriter::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  if (fd_ > 2) ::close(fd_);
  fd_ = 1;
}

void AccessLogWriter::run() {
  std::string batch;
  while (true) {
    bool stopping = stop_.load();
    if (reopen_.exchange(false)) open_file();
    batch.clear();
    for (auto& r : rings_) r->drain(batch);
    size_t off = 0;
    while (off < batch.size()) {
      ssize_t n = ::write(fd_, batch.data() + off, batch.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (stopping) break;
    if (batch.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void json_escape(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
}

}  // namespace citadel::observe
