// h2c with prior knowledge on a plain listener that enables HTTP/2: the first bytes of a
// connection say which codec it needs. A PrefaceSniffer holds the accepted socket until it has
// read either the whole HTTP/2 client preface or a byte that differs from it (a request line:
// usually the first byte), bounded by the header timeout, then hands the socket and what it read
// to its owner, who builds the codec in its place and preloads those bytes into it.
#pragma once

#include <string>
#include <string_view>

#include "core/event_loop.h"
#include "core/timer_wheel.h"
#include "http/downstream_connection.h"
#include "http/stream.h"
#include "http/transport/socket_transport.h"

namespace citadel::http::http2 {

class PrefaceSniffer;

class SniffOwner {
 public:
  // Decided: build the codec (HTTP/2 when `h2`) over s.take_transport() with s.bytes()
  // preloaded, in s's place, and defer_delete s. Called from s's own I/O callback.
  virtual void on_sniffed(PrefaceSniffer& s, bool h2) = 0;

 protected:
  ~SniffOwner() = default;
};

class PrefaceSniffer final : public DownstreamConnection, public core::IoHandler {
 public:
  PrefaceSniffer(SocketTransport transport, const ConnectionInfo& info, core::EventLoop& loop,
                 ConnectionOwner& owner, SniffOwner& done, uint64_t timeout_ms);
  ~PrefaceSniffer() override;

  bool start() override;
  void close_when_idle() override { close("drain"); }
  void abort() override { close("aborted"); }
  void on_io(uint32_t events) override;

  // For SniffOwner::on_sniffed only.
  SocketTransport take_transport();
  const ConnectionInfo& info() const { return info_; }
  std::string_view bytes() const { return bytes_; }

 private:
  static void on_timeout(void* self);
  void close(std::string_view why);

  SocketTransport transport_;
  ConnectionInfo info_;
  core::EventLoop& loop_;
  ConnectionOwner& owner_;
  SniffOwner& done_;
  uint64_t timeout_ms_;
  core::Timer timer_;
  std::string bytes_;
  bool closed_ = false;
  bool taken_ = false;
};

}  // namespace citadel::http::http2
