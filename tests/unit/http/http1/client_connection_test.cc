// The HTTP/1.1 client codec over an in-memory transport: connecting, writing a request through
// short writes, reading a response in pieces, a close-delimited body that ends with the EOF,
// and when a connection goes back to the pool.
#include "http/http1/client_connection.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>

#include <cerrno>
#include <string>

#include "../transport/fake_transport.h"

namespace citadel::http::http1 {
namespace {

using testing::FakeTransport;
using testing::run_scheduled;

class FakeRequest final : public ClientCallbacks {
 public:
  ResponseHead& response_head() override { return head; }
  core::Arena& arena() override { return arena_; }
  void on_connected() override { connected = true; }
  void on_informational(const ResponseHead&) override { ++informational; }
  void on_response_headers(bool end_stream) override {
    status = head.status;
    if (end_stream) ended = true;
  }
  void on_response_data(std::string_view data, bool end_stream) override {
    body.append(data);
    if (end_stream) ended = true;
  }
  void on_upstream_write_ready() override {}
  void on_failure(ClientFailure kind, std::string_view detail) override {
    failure = std::string(failure_name(kind)) + ": " + std::string(detail);
  }

  ResponseHead head;
  bool connected = false;
  int informational = 0;
  int status = 0;
  bool ended = false;
  std::string body;
  std::string failure;

 private:
  core::Arena arena_{1024};
};

class FakePool final : public ClientOwner {
 public:
  void on_client_idle(ClientConnection&) override { ++idle; }
  void on_client_closed(ClientConnection&) override { closed = true; }
  int idle = 0;
  bool closed = false;
};

class ClientConnectionTest : public ::testing::Test {
 protected:
  ~ClientConnectionTest() override { conn_.close(); }

  void connect() {
    ASSERT_TRUE(conn_.start());
    conn_.attach(&req_);
    conn_.on_io(EPOLLOUT);  // the connect completed
    settle();
  }
  void send_get(std::string_view path) {
    RequestHead h;
    h.method = "GET";
    h.headers.add("Host", "up");
    conn_.send_head(h, path);
    settle();
  }
  void receive(std::string_view bytes, bool eof = false) {
    transport_.deliver(bytes, eof);
    conn_.on_io(EPOLLIN);
    settle();
  }
  void settle() {
    for (int i = 0; i < 8; ++i) run_scheduled(loop_);
  }

  core::EventLoop loop_;
  core::BlockPool blocks_;
  FakeTransport transport_;
  FakePool pool_;
  FakeRequest req_;
  ClientConnection conn_{transport_, loop_, blocks_, pool_};
};

TEST_F(ClientConnectionTest, ReportsAFailedConnect) {
  transport_.connect_err = ECONNREFUSED;
  ASSERT_TRUE(conn_.start());
  conn_.attach(&req_);
  conn_.on_io(EPOLLOUT | EPOLLERR);
  EXPECT_FALSE(req_.connected);
  EXPECT_EQ(req_.failure.rfind("connect_failure: ", 0), 0u) << req_.failure;
  EXPECT_TRUE(transport_.closed);
  EXPECT_TRUE(pool_.closed);
}

TEST_F(ClientConnectionTest, ReadsAResponseDeliveredOneByteAtATime) {
  connect();
  ASSERT_TRUE(req_.connected);
  send_get("/x");
  EXPECT_EQ(transport_.output, "GET /x HTTP/1.1\r\nHost: up\r\n\r\n");
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  for (char c : resp) receive(std::string(1, c));
  EXPECT_EQ(req_.status, 200);
  EXPECT_EQ(req_.body, "hello");
  EXPECT_TRUE(req_.ended);
  EXPECT_EQ(pool_.idle, 1);  // reusable
  EXPECT_FALSE(pool_.closed);
}

TEST_F(ClientConnectionTest, WritesTheRequestThroughShortWrites) {
  transport_.write_limit = 3;
  transport_.write_budget = 10;
  connect();
  send_get("/short");
  const std::string expected = "GET /short HTTP/1.1\r\nHost: up\r\n\r\n";
  EXPECT_EQ(transport_.output, expected.substr(0, 10));
  transport_.write_budget = SIZE_MAX;
  conn_.on_io(EPOLLOUT);
  settle();
  EXPECT_EQ(transport_.output, expected);
}

TEST_F(ClientConnectionTest, EndsACloseDelimitedBodyWithTheEofThatCameWithIt) {
  connect();
  send_get("/until-close");
  receive("HTTP/1.1 200 OK\r\n\r\nfirst ");
  receive("last", /*eof=*/true);
  EXPECT_EQ(req_.body, "first last");
  EXPECT_TRUE(req_.ended);
  EXPECT_TRUE(req_.failure.empty()) << req_.failure;
  EXPECT_TRUE(pool_.closed);  // not reusable
  EXPECT_EQ(pool_.idle, 0);
}

TEST_F(ClientConnectionTest, AResponseWithItsEofIsCompleteButNotReused) {
  connect();
  send_get("/");
  receive("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", /*eof=*/true);
  EXPECT_EQ(req_.body, "ok");
  EXPECT_TRUE(req_.ended);
  EXPECT_TRUE(req_.failure.empty()) << req_.failure;
  EXPECT_EQ(pool_.idle, 0);
  EXPECT_TRUE(pool_.closed);
}

TEST_F(ClientConnectionTest, AnEofInTheHeadIsAReset) {
  connect();
  send_get("/");
  receive("HTTP/1.1 200 OK\r\nContent-", /*eof=*/true);
  EXPECT_EQ(req_.failure, "reset_before_response: upstream closed in the response head");
  EXPECT_TRUE(transport_.closed);
}

TEST_F(ClientConnectionTest, HalfClosesATunnelThroughTheTransport) {
  connect();
  RequestHead h;
  h.method = "GET";
  h.upgrade = true;
  h.headers.add("Upgrade", "websocket");
  conn_.send_head(h, "/ws");
  settle();
  receive("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  ASSERT_EQ(req_.status, 101);
  conn_.send_tunnel("bye", /*end_stream=*/true);
  settle();
  EXPECT_TRUE(transport_.write_shut);
  EXPECT_EQ(transport_.output.substr(transport_.output.size() - 3), "bye");
}

}  // namespace
}  // namespace citadel::http::http1

namespace citadel::http::http1 {
namespace {

class RequestFramingTest : public ClientConnectionTest {
 protected:
  void send_post(uint64_t content_length) {
    RequestHead h;
    h.method = "POST";
    h.headers.add("Host", "up");
    h.framing = BodyFraming::kContentLength;
    h.content_length = content_length;
    conn_.send_head(h, "/p");
  }
};

TEST_F(RequestFramingTest, ABodyLongerThanItsContentLengthIsNeverSent) {
  // A filter that grew the body under an unchanged Content-Length: the extra bytes would be
  // read by the upstream as the next request on the connection (request smuggling).
  connect();
  send_post(5);
  conn_.send_data("hello", false);
  conn_.send_data("GET /admin HTTP/1.1\r\nHost: up\r\n\r\n", true);
  settle();
  EXPECT_EQ(req_.failure, "request_framing: request body does not match its Content-Length");
  EXPECT_EQ(transport_.output.find("GET /admin"), std::string::npos);
  EXPECT_TRUE(pool_.closed);
}

TEST_F(RequestFramingTest, ABodyShorterThanItsContentLengthFails) {
  connect();
  send_post(10);
  conn_.send_data("short", true);
  settle();
  EXPECT_EQ(req_.failure, "request_framing: request body does not match its Content-Length");
  EXPECT_TRUE(pool_.closed);
}

TEST_F(RequestFramingTest, AnExactBodyGoesOut) {
  connect();
  send_post(5);
  conn_.send_data("hel", false);
  conn_.send_data("lo", true);
  settle();
  EXPECT_EQ(req_.failure, "");
  EXPECT_NE(transport_.output.find("\r\n\r\nhello"), std::string::npos);
}

}  // namespace
}  // namespace citadel::http::http1
