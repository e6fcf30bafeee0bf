#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "http/client/http_client.h"
#include "proxy/targets/redirect.h"
#include "proxy/targets/respond.h"

namespace citadel::proxy {
namespace {

// Records what a handler sends (a fake of the one interface under test).
class RecordingContext final : public pipeline::HandlerContext, public pipeline::WorkerContext,
                               public pipeline::HandleTarget {
 public:
  http::RequestHead& request() override { return req; }
  std::string_view route_path() const override { return req.path; }
  http::ResponseHead& response_head() override { return resp; }
  void send_informational(const http::ResponseHead&) override {}
  void send_response_headers(bool end_stream) override {
    headers_sent = true;
    ended = end_stream;
  }
  void send_response_data(std::string_view data, bool end_stream) override {
    body.append(data);
    ended = end_stream;
  }
  void send_response_trailers(const http::HeaderMap&) override { ended = true; }
  void send_local_reply(int status, std::string_view b) override {
    resp.status = status;
    body.append(b);
    ended = true;
  }
  void reset_stream() override {}
  bool response_blocked() const override { return false; }
  void pause_request_body() override {}
  void resume_request_body() override {}
  core::Arena& arena() override { return arena_; }
  core::BlockPool& blocks() override { return blocks_; }
  pipeline::WorkerContext& worker() override { return *this; }
  pipeline::StreamHandle handle() override { return {this, generation()}; }
  pipeline::StreamInfo& info() override { return info_; }
  const http::ConnectionInfo& connection() const override { return conn_; }
  size_t index() const override { return 0; }
  core::EventLoop& loop() override { return loop_; }
  core::BlockingPool* blocking_pool() override { return nullptr; }
  observe::ErrorLog& log() override { return log_; }
  http::client::HttpClient& http_client() override {
    if (client_ == nullptr) client_ = std::make_unique<http::client::HttpClient>(loop_, blocks_);
    return *client_;
  }

  http::RequestHead req;
  http::ResponseHead resp;
  bool headers_sent = false;
  bool ended = false;
  std::string body;
  core::Arena arena_;
  observe::ErrorLog log_;
  core::BlockPool blocks_;
  core::EventLoop loop_;
  pipeline::StreamInfo info_;
  http::ConnectionInfo conn_;
  std::unique_ptr<http::client::HttpClient> client_;  // before the loop goes
};

TEST(RespondHandler, SendsStatusTypeAndBody) {
  RespondConfig c;
  c.status = 418;
  c.body = "short and stout\n";
  c.content_type = "text/teapot";
  RespondHandlerFactory f(c);
  core::Arena arena;
  RecordingContext ctx;
  pipeline::Handler* h = f.create(arena);
  h->on_request_headers(ctx, true);
  EXPECT_TRUE(ctx.headers_sent);
  EXPECT_TRUE(ctx.ended);
  EXPECT_EQ(ctx.resp.status, 418);
  EXPECT_EQ(ctx.resp.headers.find("content-type")->value, "text/teapot");
  EXPECT_EQ(ctx.resp.content_length, c.body.size());
  EXPECT_EQ(ctx.body, c.body);
  h->~Handler();
}

TEST(RedirectHandler, ComposesLocationFromTheRequest) {
  RedirectConfig c;
  c.status = 308;
  c.scheme = "https";
  RedirectHandlerFactory f(c);
  core::Arena arena;
  RecordingContext ctx;
  ctx.req.scheme = "http";
  ctx.req.authority = "shop.example.com";
  ctx.req.path = "/cart";
  ctx.req.query = "id=7";
  pipeline::Handler* h = f.create(arena);
  h->on_request_headers(ctx, true);
  EXPECT_EQ(ctx.resp.status, 308);
  EXPECT_EQ(ctx.resp.headers.find("location")->value, "https://shop.example.com/cart?id=7");
  EXPECT_TRUE(ctx.ended);
  h->~Handler();
}

TEST(RedirectHandler, NamedHostReplacesTheClientsHost) {
  RedirectConfig c;
  c.status = 301;
  c.host = "example.com";
  RedirectHandlerFactory f(c);
  core::Arena arena;
  RecordingContext ctx;
  ctx.req.scheme = "https";
  ctx.req.authority = "evil.example.net";
  ctx.req.path = "/a";
  pipeline::Handler* h = f.create(arena);
  h->on_request_headers(ctx, true);
  EXPECT_EQ(ctx.resp.headers.find("location")->value, "https://example.com/a");
  h->~Handler();
}

}  // namespace
}  // namespace citadel::proxy
