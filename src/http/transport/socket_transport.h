// The plain TCP transport, and the socket work around it: accepting a client, connecting to an
// upstream. The only place the codecs' sockets are read, written and closed.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <utility>

#include "http/stream.h"
#include "http/transport/transport.h"

namespace citadel::http {

// One connected, non-blocking socket. Owns the descriptor (closed by close() or the destructor).
class SocketTransport final : public Transport {
 public:
  explicit SocketTransport(int fd) : fd_(fd) {}
  SocketTransport(SocketTransport&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), registered_(std::exchange(other.registered_, false)) {}
  SocketTransport& operator=(SocketTransport&&) = delete;
  ~SocketTransport() override;

  int fd() const { return fd_; }

  core::Status register_with(core::EventLoop& loop, core::IoHandler& handler) override;
  // A socket's readiness is the codec's readiness.
  uint32_t ready(uint32_t events) override { return events; }
  // One read(2).
  ReadResult read_into(char* dst, size_t room, size_t& n) override;
  // One send(2) (MSG_NOSIGNAL: a closed peer is an error, not a signal).
  long write(const char* data, size_t len) override;
  // One sendmsg(2) with two pieces.
  long writev(std::string_view a, std::string_view b) override;
  void shutdown_write() override;
  void close(core::EventLoop& loop) override;
  // SO_ERROR.
  int connect_error() override;

 private:
  int fd_;
  bool registered_ = false;  // a codec taking over (h2c sniffing) rebinds instead of adding
};

enum class AcceptResult {
  kAccepted,
  kNone,           // nothing queued, or an error that the next edge retries
  kNoDescriptors,  // out of descriptors or memory (errno says which); the client stays queued
};
// How long a listener waits before accepting again after kNoDescriptors: an edge-triggered
// listening socket does not report the clients still queued.
constexpr uint64_t kAcceptRetryMs = 100;

// Accepts one client from listening socket `lfd` (non-blocking, close-on-exec, TCP_NODELAY) and
// records its address in `info`. Shared by the worker and admin listeners.
AcceptResult accept_client(int lfd, int& fd, ConnectionInfo& info);

// Starts a non-blocking connect to `addr` (TCP_NODELAY). Returns the socket, or -1 when it could
// not be created or the connect failed at once (errno set). Completion shows as EPOLLOUT and
// connect_error().
int connect_socket(const sockaddr* addr, socklen_t len);

}  // namespace citadel::http
