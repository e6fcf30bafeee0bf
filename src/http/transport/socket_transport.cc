#include "http/transport/socket_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

namespace citadel::http {

SocketTransport::~SocketTransport() {
  if (fd_ >= 0) ::close(fd_);
}

core::Status SocketTransport::register_with(core::EventLoop& loop, core::IoHandler& handler) {
  core::Status st = registered_ ? loop.rebind(fd_, &handler) : loop.add(fd_, &handler);
  registered_ = st.ok();
  return st;
}

ReadResult SocketTransport::read_into(char* dst, size_t room, size_t& n) {
  n = 0;
  while (true) {
    ssize_t r = ::read(fd_, dst, room);
    if (r > 0) {
      n = static_cast<size_t>(r);
      return n < room ? ReadResult::kDrained : ReadResult::kMore;
    }
    if (r == 0) return ReadResult::kEof;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? ReadResult::kDrained : ReadResult::kError;
  }
}

long SocketTransport::write(const char* data, size_t len) {
  while (true) {
    ssize_t r = ::send(fd_, data, len, MSG_NOSIGNAL);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : -1;
  }
}

long SocketTransport::writev(std::string_view a, std::string_view b) {
  iovec iov[2] = {{const_cast<char*>(a.data()), a.size()}, {const_cast<char*>(b.data()), b.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = b.empty() ? 1 : 2;
  while (true) {
    ssize_t r = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : -1;
  }
}

void SocketTransport::shutdown_write() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void SocketTransport::close(core::EventLoop& loop) {
  if (fd_ < 0) return;
  loop.remove(fd_);
  ::close(fd_);
  fd_ = -1;
}

int SocketTransport::connect_error() {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

AcceptResult accept_client(int lfd, int& fd, ConnectionInfo& info) {
  while (true) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        return AcceptResult::kNoDescriptors;
      }
      return AcceptResult::kNone;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ss.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, info.peer_ip, sizeof info.peer_ip);
      info.peer_port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, info.peer_ip, sizeof info.peer_ip);
      info.peer_port = ntohs(a->sin6_port);
    }
    return AcceptResult::kAccepted;
  }
}

int connect_socket(const sockaddr* addr, socklen_t len) {
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, addr, len) != 0 && errno != EINPROGRESS) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

}  // namespace citadel::http
