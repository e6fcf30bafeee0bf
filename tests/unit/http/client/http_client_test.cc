// The HTTP client against real servers on loopback (test_servers.h): round trips, framing,
// pooling and its retry, failures and timeouts, cancel and shutdown, name resolution through a
// DNS server and /etc/hosts (CARES_HOSTS). The client lives on a LoopThread; every wait is
// bounded.
#include "http/client/http_client.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "../../core/loop_thread.h"
#include "test_servers.h"
#include "test_tls_server.h"

namespace citadel::http::client {
namespace {

using namespace std::chrono_literals;
using testing::Answer;
using testing::response;
using testing::SeenRequest;
using testing::TestDnsServer;
using testing::TestHttpServer;
using testing::TestTlsServer;

// Responses as they arrive, from the loop thread.
class Collector {
 public:
  ResponseCallback callback() {
    return [this](ClientResponse& r) {
      std::lock_guard<std::mutex> lock(mu_);
      got_.push_back(std::move(r));
      cv_.notify_all();
    };
  }
  bool wait(size_t n, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return got_.size() >= n; });
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_.size();
  }
  ClientResponse at(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return got_.at(i);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ClientResponse> got_;
};

// Waits for a condition another thread makes true, up to `timeout`.
template <class Fn>
bool eventually(Fn fn, std::chrono::milliseconds timeout = 5000ms) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (fn()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return fn();
}

class HttpClientTest : public ::testing::Test {
 protected:
  void TearDown() override {
    on_loop([&] { handles_.clear(); });  // handles live and die on the loop
    destroy_client();
  }

  void make_client(ClientOptions options = {}) {
    on_loop([&] { client_ = std::make_unique<HttpClient>(lt_.loop, blocks_, options); });
  }
  void destroy_client() {
    on_loop([&] { client_.reset(); });
  }
  // Runs `fn` on the loop thread and waits for it.
  template <class Fn>
  void on_loop(Fn fn) {
    std::promise<void> done;
    lt_.loop.post([&] {
      fn();
      done.set_value();
    });
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  }
  // Sends on the loop; the fixture keeps the handle (handles are loop-thread objects, and
  // destroying one cancels its request). Returns its index in handles_.
  size_t send(ClientRequest req, Collector& c) {
    size_t i = 0;
    on_loop([&] {
      handles_.push_back(client_->send(req, c.callback()));
      i = handles_.size() - 1;
    });
    return i;
  }
  ClientResponse fetch(ClientRequest req) {
    Collector c;
    send(req, c);
    EXPECT_TRUE(c.wait(1)) << "no response for " << req.url;
    return c.size() > 0 ? c.at(0) : ClientResponse{};
  }
  static std::string url(const TestHttpServer& s, const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(s.port()) + path;
  }

  core::BlockPool blocks_;  // outlives the loop's graveyard
  core::testing::LoopThread lt_;
  std::unique_ptr<HttpClient> client_;
  std::vector<RequestHandle> handles_;  // touched on the loop only
};

Answer echo(const SeenRequest& r) {
  return {Answer::kRespond,
          response(200, r.method + " " + r.target + " " + r.body, "X-Up: yes\r\n")};
}

TEST_F(HttpClientTest, GetRoundTrip) {
  TestHttpServer server(echo);
  ASSERT_TRUE(server.ok());
  make_client();
  ClientRequest req;
  std::string u = url(server, "/a/b?x=1");
  req.url = u;
  req.headers = {{"X-Req", "1"}};
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /a/b?x=1 ");
  ASSERT_NE(r.header("x-up"), nullptr);
  EXPECT_EQ(*r.header("x-up"), "yes");
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].head.find("Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n"),
            std::string::npos);
  EXPECT_NE(seen[0].head.find("X-Req: 1\r\n"), std::string::npos);
}

TEST_F(HttpClientTest, PostSendsItsBodyWithContentLength) {
  TestHttpServer server(echo);
  make_client();
  ClientRequest req;
  std::string u = url(server, "/post");
  req.url = u;
  req.method = "POST";
  req.body = "payload";
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << r.error_detail;
  EXPECT_EQ(r.body, "POST /post payload");
  EXPECT_NE(server.seen()[0].head.find("Content-Length: 7\r\n"), std::string::npos);
}

TEST_F(HttpClientTest, ReassemblesAChunkedResponse) {
  TestHttpServer server([](const SeenRequest&) {
    return Answer{Answer::kRespond,
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"};
  });
  make_client();
  ClientRequest req;
  std::string u = url(server, "/chunked");
  req.url = u;
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << r.error_detail;
  EXPECT_EQ(r.body, "hello world");
}

TEST_F(HttpClientTest, ReusesAKeepAliveConnection) {
  TestHttpServer server(echo);
  make_client();
  ClientRequest req;
  std::string u = url(server, "/again");
  req.url = u;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(fetch(req).ok());
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(server.requests(), 3);
  size_t idle = 0;
  on_loop([&] { idle = client_->idle_connections(); });
  EXPECT_EQ(idle, 1u);
}

TEST_F(HttpClientTest, IdleTimeoutClosesPooledConnections) {
  TestHttpServer server(echo);
  ClientOptions o;
  o.idle_timeout_ms = 100;
  make_client(o);
  ClientRequest req;
  std::string u = url(server, "/idle");
  req.url = u;
  ASSERT_TRUE(fetch(req).ok());
  EXPECT_TRUE(eventually([&] { return server.closed() == 1; }, 3000ms));
  size_t idle = 1;
  on_loop([&] { idle = client_->idle_connections(); });
  EXPECT_EQ(idle, 0u);
}

// The server closes a pooled connection as the next request arrives on it (the race every
// keep-alive client meets): the request never reached the application.
Answer close_second_on_connection(const SeenRequest& r) {
  if (r.index_on_connection == 1) return {Answer::kCloseWithoutResponse, ""};
  return echo(r);
}

TEST_F(HttpClientTest, RetriesAGetOnAPooledConnectionTheServerClosed) {
  TestHttpServer server(close_second_on_connection);
  make_client();
  ClientRequest req;
  std::string u = url(server, "/r");
  req.url = u;
  ASSERT_TRUE(fetch(req).ok());
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  EXPECT_EQ(r.body, "GET /r ");
  EXPECT_EQ(server.accepted(), 2);
}

TEST_F(HttpClientTest, DoesNotRetryAPost) {
  TestHttpServer server(close_second_on_connection);
  make_client();
  ClientRequest req;
  std::string u = url(server, "/p");
  req.url = u;
  req.method = "POST";
  req.body = "once";
  ASSERT_TRUE(fetch(req).ok());
  ClientResponse r = fetch(req);
  EXPECT_EQ(r.error, ClientError::kReset) << error_name(r.error);
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(server.requests(), 2);
}

TEST_F(HttpClientTest, ReportsARefusedConnect) {
  uint16_t port;
  {
    TestHttpServer gone(echo);
    port = gone.port();
  }
  make_client();
  ClientRequest req;
  std::string u = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.url = u;
  ClientResponse r = fetch(req);
  EXPECT_EQ(r.error, ClientError::kConnectFailed) << error_name(r.error);
}

TEST_F(HttpClientTest, TimesOutAServerThatNeverAnswers) {
  TestHttpServer server([](const SeenRequest&) { return Answer{Answer::kHang, ""}; });
  make_client();
  ClientRequest req;
  std::string u = url(server, "/slow");
  req.url = u;
  req.timeout_ms = 200;
  auto start = std::chrono::steady_clock::now();
  ClientResponse r = fetch(req);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.error, ClientError::kTimeout) << error_name(r.error);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 2000ms);
  // The connection is not kept: the server sees it close.
  EXPECT_TRUE(eventually([&] { return server.closed() == 1; }));
}

TEST_F(HttpClientTest, RefusesABodyLargerThanTheBound) {
  TestHttpServer server([](const SeenRequest& r) {
    std::string big(1000, 'x');
    if (r.target == "/chunked") {
      return Answer{
          Answer::kRespond,
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + big + "\r\n0\r\n\r\n"};
    }
    return Answer{Answer::kRespond, response(200, big)};
  });
  make_client();
  ClientRequest req;
  std::string u = url(server, "/big");
  req.url = u;
  req.max_response_body = 100;
  ClientResponse r = fetch(req);
  EXPECT_EQ(r.error, ClientError::kBodyTooLarge) << error_name(r.error);
  std::string u2 = url(server, "/chunked");
  req.url = u2;
  r = fetch(req);
  EXPECT_EQ(r.error, ClientError::kBodyTooLarge) << error_name(r.error);
  // Neither connection went back to the pool.
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_TRUE(eventually([&] { return server.closed() == 2; }));
}

TEST_F(HttpClientTest, CancelBeforeTheResponseMeansNoCallback) {
  TestHttpServer server([](const SeenRequest& r) {
    if (r.target == "/hang") return Answer{Answer::kHang, ""};
    return echo(r);
  });
  make_client();
  Collector cancelled;
  ClientRequest req;
  std::string u = url(server, "/hang");
  req.url = u;
  size_t h = send(req, cancelled);
  ASSERT_TRUE(eventually([&] { return server.requests() == 1; }));
  on_loop([&] {
    EXPECT_TRUE(handles_[h].pending());
    handles_[h].cancel();
    EXPECT_FALSE(handles_[h].pending());
  });
  // The connection is closed, and a later request is answered while the cancelled one never is.
  EXPECT_TRUE(eventually([&] { return server.closed() == 1; }));
  std::string u2 = url(server, "/after");
  req.url = u2;
  EXPECT_TRUE(fetch(req).ok());
  EXPECT_EQ(cancelled.size(), 0u);
}

TEST_F(HttpClientTest, DestroyingTheHandleCancels) {
  // A filter keeps its handle as a member: when the stream ends and the filter goes, the
  // request goes too, and no callback reaches the freed filter.
  TestHttpServer server([](const SeenRequest&) { return Answer{Answer::kHang, ""}; });
  make_client();
  Collector c;
  std::string u = url(server, "/gone");
  on_loop([&] {
    ClientRequest req;
    req.url = u;
    auto held = std::make_unique<RequestHandle>(client_->send(req, c.callback()));
    lt_.loop.post([&, h = held.release()] { delete h; });
  });
  ASSERT_TRUE(eventually([&] { return server.closed() == 1; }));
  on_loop([&] { EXPECT_EQ(client_->in_flight(), 0u); });
  EXPECT_EQ(c.size(), 0u);
}

TEST_F(HttpClientTest, CancelAfterTheResponseIsReadyMeansNoCallback) {
  // Two responses become ready in the same loop iteration (the loop is held until the server
  // has written both); whichever callback runs first cancels the other, whose response is
  // then ready but not yet delivered.
  TestHttpServer server(echo);
  make_client();
  RequestHandle a, b;
  std::atomic<int> calls{0};
  std::string ua = url(server, "/a"), ub = url(server, "/b");
  std::promise<void> hold;
  std::shared_future<void> held = hold.get_future().share();
  on_loop([&] {
    ClientRequest ra;
    ra.url = ua;
    ClientRequest rb;
    rb.url = ub;
    a = client_->send(ra, [&](ClientResponse&) {
      ++calls;
      b.cancel();
    });
    b = client_->send(rb, [&](ClientResponse&) {
      ++calls;
      a.cancel();
    });
    // Hold the loop after the requests leave until both answers are in the sockets.
    lt_.loop.post([&, held] { held.wait_for(5s); });
  });
  ASSERT_TRUE(eventually([&] { return server.answered() == 2; }));
  hold.set_value();
  ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }));
  // Let the loop go round a few more times: nothing else may arrive.
  for (int i = 0; i < 3; ++i) on_loop([] {});
  EXPECT_EQ(calls.load(), 1);
  on_loop([&] {
    a = RequestHandle();
    b = RequestHandle();
  });
}

TEST_F(HttpClientTest, AMovedHandleStillCancels) {
  TestHttpServer server([](const SeenRequest&) { return Answer{Answer::kHang, ""}; });
  make_client();
  Collector c;
  std::string u = url(server, "/moved");
  RequestHandle kept;
  on_loop([&] {
    ClientRequest req;
    req.url = u;
    RequestHandle first = client_->send(req, c.callback());
    RequestHandle second(std::move(first));  // the moved-from handle goes first
    EXPECT_FALSE(first.pending());
    kept = std::move(second);
    EXPECT_TRUE(kept.pending());
  });
  ASSERT_TRUE(eventually([&] { return server.requests() == 1; }));
  on_loop([&] {
    kept.cancel();
    EXPECT_EQ(client_->in_flight(), 0u);
  });
  EXPECT_TRUE(eventually([&] { return server.closed() == 1; }));
  EXPECT_EQ(c.size(), 0u);
}

TEST_F(HttpClientTest, ManyConcurrentRequests) {
  TestHttpServer server(echo);
  make_client();
  constexpr int kRequests = 200;
  Collector c;
  std::vector<std::string> urls;
  for (int i = 0; i < kRequests; ++i) urls.push_back(url(server, "/n" + std::to_string(i)));
  std::vector<RequestHandle> handles(kRequests);
  on_loop([&] {
    for (int i = 0; i < kRequests; ++i) {
      ClientRequest req;
      req.url = urls[i];
      handles[i] = client_->send(req, c.callback());
    }
  });
  ASSERT_TRUE(c.wait(kRequests, 10000ms));
  on_loop([&] { handles.clear(); });
  std::set<std::string> bodies;
  for (int i = 0; i < kRequests; ++i) {
    ClientResponse r = c.at(i);
    EXPECT_TRUE(r.ok()) << r.error_detail;
    bodies.insert(r.body);
  }
  EXPECT_EQ(bodies.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(server.requests(), kRequests);
}

TEST_F(HttpClientTest, DestroyingTheClientCancelsEverythingWithoutCallbacks) {
  TestHttpServer server([](const SeenRequest&) { return Answer{Answer::kHang, ""}; });
  // A DNS server that never answers: the lookup stays pending.
  int silent = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t alen = sizeof a;
  ::getsockname(silent, reinterpret_cast<sockaddr*>(&a), &alen);
  ClientOptions o;
  o.resolver.servers = {"127.0.0.1:" + std::to_string(ntohs(a.sin_port))};
  make_client(o);
  Collector c;
  std::vector<std::string> urls;
  for (int i = 0; i < 10; ++i) urls.push_back(url(server, "/" + std::to_string(i)));
  on_loop([&] {
    for (const auto& u : urls) {
      ClientRequest req;
      req.url = u;
      client_->send(req, c.callback()).detach();  // requests go on without a handle
    }
    ClientRequest req;
    req.url = "http://pending.citadel.test/";
    client_->send(req, c.callback()).detach();
    EXPECT_EQ(client_->in_flight(), 11u);
  });
  ASSERT_TRUE(eventually([&] { return server.requests() == 10; }));
  destroy_client();
  EXPECT_TRUE(eventually([&] { return server.closed() == 10; }));
  for (int i = 0; i < 3; ++i) on_loop([] {});
  EXPECT_EQ(c.size(), 0u);
  ::close(silent);
}

TEST_F(HttpClientTest, ResolvesThroughADnsServerAndCachesTheAnswer) {
  TestHttpServer server(echo);
  TestDnsServer dns({{"api.citadel.test", {"127.0.0.1"}}}, 60);
  ClientOptions o;
  o.resolver.servers = {dns.address()};
  make_client(o);
  ClientRequest req;
  std::string u = "http://api.citadel.test:" + std::to_string(server.port()) + "/dns";
  req.url = u;
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  EXPECT_EQ(r.body, "GET /dns ");
  EXPECT_NE(server.seen()[0].head.find("Host: api.citadel.test:"), std::string::npos);
  ASSERT_TRUE(fetch(req).ok());
  EXPECT_EQ(dns.a_queries("api.citadel.test"), 1);  // the second came from the cache
}

TEST_F(HttpClientTest, TriesTheNextAddressWhenAConnectFails) {
  TestHttpServer server(echo);  // on 127.0.0.1 only: 127.0.0.2 refuses
  TestDnsServer dns({{"two.citadel.test", {"127.0.0.2", "127.0.0.1"}}}, 60);
  ClientOptions o;
  o.resolver.servers = {dns.address()};
  make_client(o);
  ClientRequest req;
  std::string u = "http://two.citadel.test:" + std::to_string(server.port()) + "/";
  req.url = u;
  for (int i = 0; i < 2; ++i) {
    ClientResponse r = fetch(req);
    EXPECT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  }
}

TEST_F(HttpClientTest, AnUnresolvableNameIsAResolveError) {
  TestDnsServer dns({});
  ClientOptions o;
  o.resolver.servers = {dns.address()};
  make_client(o);
  ClientRequest req;
  req.url = "http://nowhere.citadel.test/";
  ClientResponse r = fetch(req);
  EXPECT_EQ(r.error, ClientError::kResolveFailed) << error_name(r.error);
  EXPECT_NE(r.error_detail.find("nowhere.citadel.test"), std::string::npos) << r.error_detail;
  EXPECT_GE(dns.total_queries(), 1);
}

TEST_F(HttpClientTest, HonoursTheHostsFile) {
  TestHttpServer server(echo);
  TestDnsServer dns({});
  std::string path = ::testing::TempDir() + "citadel_client_hosts." + std::to_string(::getpid());
  {
    std::ofstream f(path);
    f << "127.0.0.1 hosts-only.citadel.test\n";
  }
  // The resolver reads the hosts file named by CARES_HOSTS (ARES_AI_ENVHOSTS) at lookup time.
  ::setenv("CARES_HOSTS", path.c_str(), 1);
  ClientOptions o;
  o.resolver.servers = {dns.address()};
  make_client(o);
  ClientRequest req;
  std::string u = "http://hosts-only.citadel.test:" + std::to_string(server.port()) + "/h";
  req.url = u;
  ClientResponse r = fetch(req);
  ::unsetenv("CARES_HOSTS");
  std::remove(path.c_str());
  ASSERT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  EXPECT_EQ(dns.total_queries(), 0);
}

TEST_F(HttpClientTest, ConnectsToAnIpv6Literal) {
  TestHttpServer server(echo, /*ipv6=*/true);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here";
  make_client();
  ClientRequest req;
  std::string u = "http://[::1]:" + std::to_string(server.port()) + "/six";
  req.url = u;
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  EXPECT_EQ(r.body, "GET /six ");
  EXPECT_NE(server.seen()[0].head.find("Host: [::1]:"), std::string::npos);
}

TEST_F(HttpClientTest, ErrorsFoundInSendAreDeliveredLater) {
  make_client();
  Collector c;
  bool inside = false;
  bool called_inside = false;
  on_loop([&] {
    inside = true;
    for (std::string_view u : {"https://example.test/", "not a url", "ftp://x/"}) {
      ClientRequest req;
      req.url = u;
      client_->send(req, [&, cb = c.callback()](ClientResponse& r) {
        if (inside) called_inside = true;
        cb(r);
      }).detach();
    }
    ClientRequest bad;
    bad.url = "http://127.0.0.1:1/";
    bad.headers = {{"Content-Length", "5"}};
    client_->send(bad, c.callback()).detach();
    inside = false;
  });
  ASSERT_TRUE(c.wait(4));
  EXPECT_FALSE(called_inside);
  EXPECT_EQ(c.at(0).error, ClientError::kUnsupportedScheme);
  EXPECT_EQ(c.at(1).error, ClientError::kInvalidUrl);
  EXPECT_EQ(c.at(2).error, ClientError::kInvalidUrl);
  EXPECT_EQ(c.at(3).error, ClientError::kInvalidRequest);
}

// --- https ---------------------------------------------------------------------------------------

std::shared_ptr<const TlsClientContext> trusting(const std::string& ca) {
  TlsClientOptions o;
  o.ca = ca;
  auto ctx = TlsClientContext::create(o);
  EXPECT_TRUE(ctx.ok()) << ctx.error().message();
  return ctx.ok() ? ctx.value() : nullptr;
}

TEST_F(HttpClientTest, HttpsVerifiesTheServerAndResumesItsSession) {
  TestTlsServer server(::testing::TempDir());
  ASSERT_TRUE(server.ok());
  ClientOptions o;
  o.tls = trusting(server.cert_path());
  make_client(o);
  ClientRequest req;
  std::string u = "https://127.0.0.1:" + std::to_string(server.port()) + "/x";
  req.url = u;
  ClientResponse first = fetch(req);
  ASSERT_TRUE(first.ok()) << error_name(first.error) << ": " << first.error_detail;
  EXPECT_EQ(first.status, 200);
  // An IP address is verified against the certificate's addresses and never sent as SNI.
  EXPECT_EQ(first.body, "sni=- resumed=0 client_cert=0");
  EXPECT_EQ(o.tls->cached_sessions(), 1u);
  // The server closed: the next request makes a new connection, which resumes the session.
  ClientResponse second = fetch(req);
  ASSERT_TRUE(second.ok()) << error_name(second.error) << ": " << second.error_detail;
  EXPECT_EQ(second.body, "sni=- resumed=1 client_cert=0");
  EXPECT_EQ(server.handshakes(), 2);
}

TEST_F(HttpClientTest, HttpsSendsTheNameAsSniAndChecksIt) {
  TestTlsServer server(::testing::TempDir());
  TestDnsServer dns(std::map<std::string, std::vector<std::string>>{
      {"localhost.citadel.test", {"127.0.0.1"}}});
  std::string path = ::testing::TempDir() + "citadel_tls_hosts." + std::to_string(::getpid());
  {
    std::ofstream f(path);
    f << "127.0.0.1 localhost\n";
  }
  ::setenv("CARES_HOSTS", path.c_str(), 1);
  ClientOptions o;
  o.resolver.servers = {dns.address()};
  o.tls = trusting(server.cert_path());
  make_client(o);
  ClientRequest req;
  std::string good = "https://localhost:" + std::to_string(server.port()) + "/";
  req.url = good;
  ClientResponse r = fetch(req);
  ASSERT_TRUE(r.ok()) << error_name(r.error) << ": " << r.error_detail;
  EXPECT_EQ(r.body, "sni=localhost resumed=0 client_cert=0");
  // The same server under a name its certificate does not carry: refused before any request.
  std::string wrong = "https://localhost.citadel.test:" + std::to_string(server.port()) + "/";
  req.url = wrong;
  r = fetch(req);
  ::unsetenv("CARES_HOSTS");
  std::remove(path.c_str());
  EXPECT_EQ(r.error, ClientError::kConnectFailed) << error_name(r.error);
  EXPECT_NE(r.error_detail.find("hostname mismatch"), std::string::npos) << r.error_detail;
}

TEST_F(HttpClientTest, HttpsRefusesAnUntrustedServer) {
  TestTlsServer server(::testing::TempDir());
  ClientOptions o;
  o.tls = trusting("");  // the system's store, which does not hold the test's certificate
  make_client(o);
  ClientRequest req;
  std::string u = "https://127.0.0.1:" + std::to_string(server.port()) + "/";
  req.url = u;
  ClientResponse r = fetch(req);
  EXPECT_EQ(r.error, ClientError::kConnectFailed) << error_name(r.error);
  EXPECT_NE(r.error_detail.find("certificate verify failed"), std::string::npos)
      << r.error_detail;
  // Plain HTTP to a TLS port is an answer nobody can read: a protocol error or a reset.
  std::string plain = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  req.url = plain;
  req.timeout_ms = 3000;
  r = fetch(req);
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace citadel::http::client
