// The plain socket transport against real sockets (a socketpair, a loopback listener): the
// read results edge-triggered reading relies on, two-piece writes, half-close, accept/connect.
#include "http/transport/socket_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace citadel::http {
namespace {

class SocketTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ours_ = sv[0];
    peer_ = sv[1];
  }
  void TearDown() override {
    if (peer_ >= 0) ::close(peer_);
  }
  std::string peer_read() {
    char buf[256];
    ssize_t n = ::read(peer_, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

  int ours_ = -1;
  int peer_ = -1;
};

TEST_F(SocketTransportTest, AShortReadIsDrainedAndAFullOneIsMore) {
  SocketTransport t(ours_);
  char buf[8];
  size_t n = 99;
  EXPECT_EQ(t.read_into(buf, sizeof buf, n), ReadResult::kDrained);  // nothing yet: EAGAIN
  EXPECT_EQ(n, 0u);
  ASSERT_EQ(::write(peer_, "abc", 3), 3);
  EXPECT_EQ(t.read_into(buf, sizeof buf, n), ReadResult::kDrained);
  EXPECT_EQ(std::string(buf, n), "abc");
  ASSERT_EQ(::write(peer_, "0123456789", 10), 10);
  EXPECT_EQ(t.read_into(buf, sizeof buf, n), ReadResult::kMore);  // the room filled
  EXPECT_EQ(std::string(buf, n), "01234567");
  EXPECT_EQ(t.read_into(buf, sizeof buf, n), ReadResult::kDrained);
  EXPECT_EQ(std::string(buf, n), "89");
  ::close(peer_);
  peer_ = -1;
  EXPECT_EQ(t.read_into(buf, sizeof buf, n), ReadResult::kEof);
}

TEST_F(SocketTransportTest, ReadsIntoABuffer) {
  SocketTransport t(ours_);
  ASSERT_EQ(::write(peer_, "hello", 5), 5);
  core::BlockPool pool;
  core::Buffer in(&pool);
  EXPECT_EQ(t.read(in, 1024), ReadResult::kDrained);
  EXPECT_EQ(in.view(), "hello");
}

TEST_F(SocketTransportTest, WritesOneAndTwoPiecesAndHalfCloses) {
  SocketTransport t(ours_);
  EXPECT_EQ(t.write("head ", 5), 5);
  EXPECT_EQ(t.writev("and ", "body"), 8);
  EXPECT_EQ(t.writev("alone", {}), 5);
  EXPECT_EQ(peer_read(), "head and bodyalone");
  t.shutdown_write();
  char c;
  EXPECT_EQ(::read(peer_, &c, 1), 0);  // the peer sees the end
}

TEST_F(SocketTransportTest, AFullSocketTakesNothingAndABrokenOneFails) {
  SocketTransport t(ours_);
  std::string big(1 << 16, 'x');
  long total = 0;
  long n;
  while ((n = t.write(big.data(), big.size())) > 0) total += n;
  EXPECT_EQ(n, 0);  // would block: try again on EPOLLOUT
  EXPECT_GT(total, 0);
  ::close(peer_);
  peer_ = -1;
  EXPECT_EQ(t.write("x", 1), -1);  // EPIPE, and no SIGPIPE
}

TEST_F(SocketTransportTest, CloseUnregistersAndClosesOnce) {
  core::EventLoop loop;
  SocketTransport t(ours_);
  struct Handler final : core::IoHandler {
    void on_io(uint32_t) override {}
  } h;
  ASSERT_TRUE(t.register_with(loop, h).ok());
  t.close(loop);
  EXPECT_EQ(t.fd(), -1);
  EXPECT_EQ(::fcntl(ours_, F_GETFD), -1);  // the descriptor is gone
  t.close(loop);                           // idempotent
}

TEST(SocketHelpersTest, ConnectsAndAccepts) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  int cfd = connect_socket(reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ASSERT_GE(cfd, 0);
  SocketTransport client(cfd);
  pollfd p{cfd, POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  EXPECT_EQ(client.connect_error(), 0);

  pollfd lp{lfd, POLLIN, 0};
  ASSERT_EQ(::poll(&lp, 1, 5000), 1);
  int sfd = -1;
  ConnectionInfo info;
  ASSERT_EQ(accept_client(lfd, sfd, info), AcceptResult::kAccepted);
  SocketTransport server(sfd);
  EXPECT_STREQ(info.peer_ip, "127.0.0.1");
  EXPECT_NE(info.peer_port, 0);
  EXPECT_EQ(accept_client(lfd, sfd, info), AcceptResult::kNone);  // nothing more queued
  ::close(lfd);
}

TEST(SocketHelpersTest, AFailedConnectIsReported) {
  // A port nobody listens on: bind one, close it, connect there.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  int cfd = connect_socket(reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (cfd < 0) {
    EXPECT_EQ(errno, ECONNREFUSED);  // refused at once
    return;
  }
  SocketTransport t(cfd);
  pollfd p{cfd, POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  EXPECT_EQ(t.connect_error(), ECONNREFUSED);
}

}  // namespace
}  // namespace citadel::http
