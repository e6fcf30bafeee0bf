// An in-memory Transport for driving the codecs without a socket: the test scripts what each
// read returns and how much each write takes, and reads back what the codec wrote.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>

#include "http/transport/transport.h"

namespace citadel::http::testing {

class FakeTransport final : public Transport {
 public:
  // Bytes the peer sends, as one readiness edge's worth. Reads return them in order: kMore while
  // a read fills its room, kDrained when it takes the last byte with room to spare (a socket
  // whose queue is now empty), and with `eof`, kEof together with the last bytes.
  void deliver(std::string_view bytes, bool eof = false) {
    input_.push_back({std::string(bytes), eof});
  }
  // The peer ends its side after what was delivered.
  void deliver_eof() { deliver({}, true); }
  bool input_pending() const { return !input_.empty(); }

  // What the codec wrote, and how writes behave: each write takes at most `write_limit` bytes,
  // and writes take `write_budget` bytes in all before reporting that they would block (0).
  std::string output;
  size_t write_limit = SIZE_MAX;
  size_t write_budget = SIZE_MAX;
  bool write_fails = false;  // writes report a broken connection (-1, EPIPE)

  bool registered = false;
  bool write_shut = false;
  bool closed = false;
  int reads = 0;
  int writes = 0;
  int connect_err = 0;  // what connect_error() reports

  core::Status register_with(core::EventLoop&, core::IoHandler&) override {
    registered = true;
    return {};
  }
  uint32_t ready(uint32_t events) override { return events; }

  ReadResult read_into(char* dst, size_t room, size_t& n) override {
    ++reads;
    n = 0;
    if (input_.empty()) return eof_ ? ReadResult::kEof : ReadResult::kDrained;
    Piece& p = input_.front();
    n = p.bytes.size() - p.offset < room ? p.bytes.size() - p.offset : room;
    std::memcpy(dst, p.bytes.data() + p.offset, n);
    p.offset += n;
    if (p.offset < p.bytes.size()) return ReadResult::kMore;
    bool eof = p.eof;
    input_.pop_front();
    if (eof) {
      eof_ = true;
      return ReadResult::kEof;
    }
    return n == room ? ReadResult::kMore : ReadResult::kDrained;
  }

  long write(const char* data, size_t len) override {
    ++writes;
    if (write_fails) {
      errno = EPIPE;
      return -1;
    }
    size_t n = len;
    if (n > write_limit) n = write_limit;
    if (n > write_budget) n = write_budget;
    write_budget -= n;
    output.append(data, n);
    return static_cast<long>(n);
  }
  long writev(std::string_view a, std::string_view b) override {
    long n = write(a.data(), a.size());
    if (n < static_cast<long>(a.size()) || b.empty()) return n;
    long m = write(b.data(), b.size());
    return m < 0 ? m : n + m;
  }
  void shutdown_write() override { write_shut = true; }
  void close(core::EventLoop&) override { closed = true; }
  int connect_error() override { return connect_err; }

 private:
  struct Piece {
    std::string bytes;
    bool eof;
    size_t offset = 0;
  };
  std::deque<Piece> input_;
  bool eof_ = false;
};

// Runs what the codec scheduled on `loop` (its flushes and read-ons), as the loop does after
// each event. stop() first makes run() return after one pass of posted work and tasks.
inline void run_scheduled(core::EventLoop& loop) {
  loop.stop();
  loop.run();
}

}  // namespace citadel::http::testing
