// The filter contract in every phase, driven through a fake stream (ChainOwner) and scripted
// filters: suspend and resume, body transformation, collecting the body, answers, resets.
#include "http/pipeline/filter_chain.h"

#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http/client/http_client.h"

namespace citadel::pipeline {
namespace {

class FakeWorker final : public WorkerContext {
 public:
  size_t index() const override { return 0; }
  core::EventLoop& loop() override { return loop_; }
  core::BlockingPool* blocking_pool() override { return nullptr; }
  observe::ErrorLog& log() override { return log_; }
  http::client::HttpClient& http_client() override {
    if (client_ == nullptr) client_ = std::make_unique<http::client::HttpClient>(loop_, blocks_);
    return *client_;
  }

 private:
  core::EventLoop loop_;
  observe::ErrorLog log_;
  core::BlockPool blocks_;
  std::unique_ptr<http::client::HttpClient> client_;
};

class FakeStream final : public ChainOwner, public HandleTarget {
 public:
  FakeStream() : arena_(4096) {}
  // What reached the target and the client, as text: "H", "D:<bytes>", "E" (end), "T:<n>".
  std::string target;
  std::string client;
  int client_status = 0;
  bool abandoned = false;
  bool reset = false;
  bool client_is_blocked = false;
  std::vector<bool> request_pauses;
  std::vector<bool> response_pauses;
  http::RequestHead req;
  http::ResponseHead resp;
  http::ResponseHead local;
  core::Arena arena_;
  core::BlockPool blocks_;
  FakeWorker worker_;
  StreamInfo info_;
  http::ConnectionInfo conn_;
  std::function<void()> on_client_end;  // runs when the response ends (the stream completes)
  std::function<void()> on_route;       // route_request: the test appends or answers
  int routed = 0;

  void target_headers(bool end) override { target += end ? "H,E," : "H,"; }
  void target_data(std::string_view d, bool end) override {
    target += "D:" + std::string(d) + ",";
    if (end) target += "E,";
  }
  void target_trailers(const http::HeaderMap& t) override {
    target += "T:" + std::to_string(t.size()) + ",";
  }
  void client_headers(http::ResponseHead& h, bool end) override {
    client_status = h.status;
    client += end ? "H,E," : "H,";
    if (end && on_client_end) on_client_end();
  }
  void client_data(std::string_view d, bool end) override {
    client += "D:" + std::string(d) + ",";
    if (end) {
      client += "E,";
      if (on_client_end) on_client_end();
    }
  }
  void client_trailers(const http::HeaderMap& t) override {
    client += "T:" + std::to_string(t.size()) + ",";
    if (on_client_end) on_client_end();
  }
  bool client_blocked() const override { return client_is_blocked; }
  void abandon_target() override { abandoned = true; }
  void reset_client() override { reset = true; }
  void pause_request_source(bool p) override { request_pauses.push_back(p); }
  void pause_response_source(bool p) override { response_pauses.push_back(p); }
  http::ResponseHead& local_head() override { return local; }
  http::RequestHead& request_head() override { return req; }
  core::Arena& arena() override { return arena_; }
  core::BlockPool& blocks() override { return blocks_; }
  WorkerContext& worker() override { return worker_; }
  StreamHandle handle() override { return {this, generation()}; }
  StreamInfo& info() override { return info_; }
  const http::ConnectionInfo& connection() const override { return conn_; }
  std::string_view route_name() const override { return "test"; }
  void route_request(bool) override {
    ++routed;
    if (on_route) on_route();
  }
  void recycle() { next_generation(); }
};

// A filter whose every callback is scripted by the test; it records what it saw.
struct Script {
  std::string name;
  std::string seen;  // "H", "D:<bytes>", "E", "T", "h" (response head), "d:<bytes>", "t", "R"
  std::function<FilterStatus(FilterContext&, http::RequestHead&, bool)> req_headers;
  std::function<FilterStatus(FilterContext&, Body&, bool)> req_data;
  std::function<FilterStatus(FilterContext&, http::HeaderMap&)> req_trailers;
  std::function<FilterStatus(FilterContext&, http::ResponseHead&, bool)> resp_headers;
  std::function<FilterStatus(FilterContext&, Body&, bool)> resp_data;
  std::function<FilterStatus(FilterContext&, http::HeaderMap&)> resp_trailers;
  FilterContext* ctx = nullptr;
  int destroyed = 0;
  int resets = 0;
  int ready = 0;  // on_response_ready calls
};

class ScriptedFilter final : public Filter {
 public:
  explicit ScriptedFilter(Script& s) : s_(s) {}
  ~ScriptedFilter() override { ++s_.destroyed; }
  FilterStatus on_request_headers(FilterContext& c, http::RequestHead& h, bool end) override {
    s_.ctx = &c;
    s_.seen += end ? "H,E," : "H,";
    return s_.req_headers ? s_.req_headers(c, h, end) : FilterStatus::kContinue;
  }
  FilterStatus on_request_data(FilterContext& c, Body& b, bool end) override {
    s_.ctx = &c;
    s_.seen += "D:" + std::string(b.view()) + (end ? ",E," : ",");
    return s_.req_data ? s_.req_data(c, b, end) : FilterStatus::kContinue;
  }
  FilterStatus on_request_trailers(FilterContext& c, http::HeaderMap& t) override {
    s_.ctx = &c;
    s_.seen += "T,";
    return s_.req_trailers ? s_.req_trailers(c, t) : FilterStatus::kContinue;
  }
  FilterStatus on_response_headers(FilterContext& c, http::ResponseHead& h, bool end) override {
    s_.ctx = &c;
    s_.seen += end ? "h,e," : "h,";
    return s_.resp_headers ? s_.resp_headers(c, h, end) : FilterStatus::kContinue;
  }
  FilterStatus on_response_data(FilterContext& c, Body& b, bool end) override {
    s_.ctx = &c;
    s_.seen += "d:" + std::string(b.view()) + (end ? ",e," : ",");
    return s_.resp_data ? s_.resp_data(c, b, end) : FilterStatus::kContinue;
  }
  FilterStatus on_response_trailers(FilterContext& c, http::HeaderMap& t) override {
    s_.ctx = &c;
    s_.seen += "t,";
    return s_.resp_trailers ? s_.resp_trailers(c, t) : FilterStatus::kContinue;
  }
  void on_reset() override { ++s_.resets; }
  void on_response_ready(FilterContext&) override { ++s_.ready; }

 private:
  Script& s_;
};

class ScriptedFactory final : public FilterFactory {
 public:
  explicit ScriptedFactory(Script& s) : s_(s) {}
  Filter* create(core::Arena& arena) const override { return arena_new<ScriptedFilter>(arena, s_); }

 private:
  Script& s_;
};

class FilterChainTest : public ::testing::Test {
 protected:
  void build(size_t n, ChainLimits limits = {}) {
    chain_.destroy();  // the factories below replace the ones the old filters came from
    scripts_.assign(n, Script{});
    factories_.clear();
    ptrs_.clear();
    for (size_t i = 0; i < n; ++i) {
      scripts_[i].name = "f" + std::to_string(i);
      factories_.push_back(std::make_unique<ScriptedFactory>(scripts_[i]));
    }
    for (auto& f : factories_) ptrs_.push_back(f.get());
    chain_.init(ptrs_.data(), n, limits);
  }
  Script& f(size_t i) { return scripts_[i]; }
  void respond_ok(std::string_view body) {
    stream_.resp.reset();
    stream_.resp.status = 200;
    chain_.response_headers(stream_.resp, false);
    chain_.response_data(body, true);
  }

  // Declared before the chain: its filters name these until the chain is destroyed.
  std::vector<Script> scripts_{};
  std::vector<std::unique_ptr<ScriptedFactory>> factories_;
  std::vector<const FilterFactory*> ptrs_;
  FakeStream stream_;
  FilterChain chain_{stream_, stream_.blocks_};
};

FilterStatus kStopFn(FilterContext&, http::RequestHead&, bool) { return FilterStatus::kStop; }

TEST_F(FilterChainTest, PassesEverythingThroughInOrder) {
  build(2);
  chain_.request_headers(false);
  chain_.request_data("ab", false);
  http::HeaderMap t;
  t.add("x-sum", "1");
  chain_.request_trailers(t);
  EXPECT_EQ(stream_.target, "H,D:ab,T:1,");
  EXPECT_EQ(f(0).seen, "H,D:ab,T,");
  EXPECT_EQ(f(1).seen, "H,D:ab,T,");
  respond_ok("ok");
  EXPECT_EQ(stream_.client, "H,D:ok,E,");
  // The response runs the filters in reverse.
  EXPECT_EQ(f(1).seen, "H,D:ab,T,h,d:ok,e,");
}

TEST_F(FilterChainTest, BodyArrivingWhileHeadersAreSuspendedPassesEveryFilterAfterTheResume) {
  build(3);
  f(1).req_headers = kStopFn;
  chain_.request_headers(false);
  chain_.request_data("one", false);
  chain_.request_data("two", true);
  // Nothing passed filter 1, and nobody saw the body yet: no filter is skipped later.
  EXPECT_EQ(stream_.target, "");
  EXPECT_EQ(f(0).seen, "H,");
  EXPECT_EQ(f(2).seen, "");
  f(1).ctx->continue_request();
  EXPECT_EQ(f(0).seen, "H,D:onetwo,E,");
  EXPECT_EQ(f(1).seen, "H,D:onetwo,E,");
  EXPECT_EQ(f(2).seen, "H,D:onetwo,E,");
  EXPECT_EQ(stream_.target, "H,D:onetwo,E,");
}

TEST_F(FilterChainTest, SuspendOnDataHoldsThePieceAndQueuesTheRest) {
  build(2);
  int calls = 0;
  f(0).req_data = [&](FilterContext&, Body&, bool) {
    return ++calls == 1 ? FilterStatus::kStop : FilterStatus::kContinue;
  };
  chain_.request_headers(false);
  chain_.request_data("a", false);
  chain_.request_data("b", false);
  chain_.request_data("c", true);
  EXPECT_EQ(stream_.target, "H,");
  f(0).ctx->continue_request();
  EXPECT_EQ(stream_.target, "H,D:a,D:bc,E,");
  EXPECT_EQ(f(0).seen, "H,D:a,D:bc,E,");
  EXPECT_EQ(f(1).seen, "H,D:a,D:bc,E,");
}

TEST_F(FilterChainTest, SuspendOnTrailersAndResume) {
  build(1);
  f(0).req_trailers = [](FilterContext&, http::HeaderMap&) { return FilterStatus::kStop; };
  chain_.request_headers(false);
  chain_.request_data("x", false);
  http::HeaderMap t;
  t.add("a", "1");
  t.add("b", "2");
  chain_.request_trailers(t);
  EXPECT_EQ(stream_.target, "H,D:x,");
  f(0).ctx->continue_request();
  EXPECT_EQ(stream_.target, "H,D:x,T:2,");
}

TEST_F(FilterChainTest, ResumeFromInsideTheCallbackIsTakenAsContinue) {
  build(2);
  f(0).req_headers = [](FilterContext& c, http::RequestHead&, bool) {
    c.continue_request();
    return FilterStatus::kStop;
  };
  chain_.request_headers(true);
  EXPECT_EQ(stream_.target, "H,E,");
}

TEST_F(FilterChainTest, SuspendInEachResponsePhase) {
  build(2);
  f(1).resp_headers = [](FilterContext&, http::ResponseHead&, bool) { return FilterStatus::kStop; };
  int data_calls = 0;
  f(0).resp_data = [&](FilterContext&, Body&, bool) {
    return ++data_calls == 1 ? FilterStatus::kStop : FilterStatus::kContinue;
  };
  f(0).resp_trailers = [](FilterContext&, http::HeaderMap&) { return FilterStatus::kStop; };
  chain_.request_headers(true);
  stream_.resp.status = 201;
  chain_.response_headers(stream_.resp, false);
  chain_.response_data("p1", false);
  EXPECT_EQ(stream_.client, "");
  f(1).ctx->continue_response();
  EXPECT_EQ(stream_.client, "H,");  // p1 now waits at filter 0
  chain_.response_data("p2", false);
  http::HeaderMap t;
  t.add("grpc-status", "0");
  chain_.response_trailers(t);
  f(0).ctx->continue_response();
  EXPECT_EQ(stream_.client, "H,D:p1,D:p2,");  // the trailers wait at filter 0
  f(0).ctx->continue_response();
  EXPECT_EQ(stream_.client, "H,D:p1,D:p2,T:1,");
  EXPECT_EQ(stream_.client_status, 201);
}

TEST_F(FilterChainTest, FiltersTransformBodies) {
  build(3);
  // Filter 0 upper-cases, filter 1 appends a marker to the last piece, filter 2 holds back
  // the last byte of every piece and releases it at the end.
  f(0).req_data = [](FilterContext&, Body& b, bool) {
    std::string up(b.view());
    for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    b.replace(up);
    return FilterStatus::kContinue;
  };
  f(1).req_data = [](FilterContext&, Body& b, bool end) {
    if (end) b.append("!");
    return FilterStatus::kContinue;
  };
  core::BlockPool pool;
  core::Buffer tail(&pool);
  f(2).req_data = [&](FilterContext&, Body& b, bool end) {
    std::string carried(tail.view());
    tail.clear();
    std::string rest(b.view());
    b.replace(carried + rest);
    if (!end) b.move_suffix_to(1, tail);
    return FilterStatus::kContinue;
  };
  chain_.request_headers(false);
  chain_.request_data("abc", false);
  chain_.request_data("de", true);
  EXPECT_EQ(stream_.target, "H,D:AB,D:CDE!,E,");
}

TEST_F(FilterChainTest, BorrowedPiecesAreNotCopiedUnlessChanged) {
  build(1);
  const char* seen_data = nullptr;
  f(0).req_data = [&](FilterContext&, Body& b, bool) {
    seen_data = b.view().data();
    EXPECT_FALSE(b.owned());
    return FilterStatus::kContinue;
  };
  std::string piece = "zero-copy";
  chain_.request_headers(false);
  chain_.request_data(piece, true);
  EXPECT_EQ(seen_data, piece.data());
}

TEST_F(FilterChainTest, StopAndBufferOnHeadersGivesTheWholeBodyThenTheHeadGoesOn) {
  build(3);
  f(1).req_headers = [](FilterContext&, http::RequestHead&, bool) {
    return FilterStatus::kStopAndBuffer;
  };
  chain_.request_headers(false);
  chain_.request_data("ab", false);
  chain_.request_data("cd", false);
  EXPECT_EQ(stream_.target, "");
  EXPECT_EQ(f(0).seen, "H,D:ab,D:cd,");  // filters before it see data as it comes
  EXPECT_EQ(f(1).seen, "H,");
  chain_.request_data("e", true);
  EXPECT_EQ(f(1).seen, "H,D:abcde,E,");
  EXPECT_EQ(f(2).seen, "H,D:abcde,E,");
  EXPECT_EQ(stream_.target, "H,D:abcde,E,");
}

TEST_F(FilterChainTest, StopAndBufferOnDataCollectsUntilTrailers) {
  build(2);
  int calls = 0;
  f(0).req_data = [&](FilterContext&, Body&, bool) {
    return ++calls == 1 ? FilterStatus::kStopAndBuffer : FilterStatus::kContinue;
  };
  chain_.request_headers(false);
  chain_.request_data("1", false);
  chain_.request_data("2", false);
  http::HeaderMap t;
  t.add("x", "y");
  chain_.request_trailers(t);
  EXPECT_EQ(f(0).seen, "H,D:1,D:12,T,");
  EXPECT_EQ(stream_.target, "H,D:12,T:1,");
}

TEST_F(FilterChainTest, CollectingOverTheLimitAnswers413) {
  ChainLimits limits;
  limits.request_buffer = 8;
  build(2, limits);
  f(1).req_headers = [](FilterContext&, http::RequestHead&, bool) {
    return FilterStatus::kStopAndBuffer;
  };
  chain_.request_headers(false);
  chain_.request_data("12345", false);
  chain_.request_data("67890", false);
  EXPECT_EQ(stream_.client_status, 413);
  EXPECT_TRUE(stream_.abandoned);
  EXPECT_EQ(stream_.target, "");
  // Both filters see the answer on its way out.
  EXPECT_NE(f(0).seen.find("h,"), std::string::npos);
  EXPECT_NE(f(1).seen.find("h,"), std::string::npos);
  // The rest of the request is dropped.
  chain_.request_data("more", true);
  EXPECT_EQ(stream_.target, "");
}

TEST_F(FilterChainTest, ResponseCollectingOverTheLimitAnswers500) {
  ChainLimits limits;
  limits.response_buffer = 4;
  build(1, limits);
  f(0).resp_headers = [](FilterContext&, http::ResponseHead& h, bool) {
    return h.status == 200 ? FilterStatus::kStopAndBuffer : FilterStatus::kContinue;
  };
  chain_.request_headers(true);
  stream_.resp.status = 200;
  chain_.response_headers(stream_.resp, false);
  chain_.response_data("toolong", false);
  EXPECT_EQ(stream_.client_status, 500);
  EXPECT_TRUE(stream_.abandoned);
  EXPECT_FALSE(stream_.reset);
}

TEST_F(FilterChainTest, AnOverflowingAnswerToAnOverflowResetsInsteadOfLooping) {
  ChainLimits limits;
  limits.response_buffer = 4;
  build(1, limits);
  // A filter that collects every response, the chain's own 500 included.
  f(0).resp_headers = [](FilterContext&, http::ResponseHead&, bool) {
    return FilterStatus::kStopAndBuffer;
  };
  chain_.request_headers(true);
  stream_.resp.status = 200;
  chain_.response_headers(stream_.resp, false);
  chain_.response_data("toolong", false);
  EXPECT_TRUE(stream_.reset);
}

TEST_F(FilterChainTest, AnswerFromRequestHeadersSkipsLaterFiltersAndTheTarget) {
  build(3);
  f(1).req_headers = [](FilterContext& c, http::RequestHead&, bool) {
    c.send_local_reply(403, "denied\n", "text/plain");
    return FilterStatus::kStop;
  };
  chain_.request_headers(false);
  EXPECT_EQ(stream_.client, "H,D:denied\n,E,");
  EXPECT_EQ(stream_.client_status, 403);
  EXPECT_EQ(stream_.target, "");
  EXPECT_TRUE(stream_.abandoned);
  EXPECT_EQ(f(2).seen, "");                      // after it: skipped
  EXPECT_EQ(f(1).seen, "H,");                     // the answering filter: not its own answer
  EXPECT_EQ(f(0).seen, "H,h,d:denied\n,e,");      // before it: sees the response
  chain_.request_data("late body", true);
  EXPECT_EQ(f(0).seen, "H,h,d:denied\n,e,");
}

TEST_F(FilterChainTest, AnswerWithAStreamedBodyFromAFilter) {
  build(2);
  http::ResponseHead cached;
  cached.status = 200;
  cached.framing = http::BodyFraming::kContentLength;
  cached.content_length = 6;
  f(1).req_headers = [&](FilterContext& c, http::RequestHead&, bool) {
    c.send_response_headers(cached, false);
    c.send_response_data("hit", false);
    return FilterStatus::kStop;
  };
  chain_.request_headers(true);
  f(1).ctx->send_response_data("!!!", true);
  EXPECT_EQ(stream_.client, "H,D:hit,D:!!!,E,");
  EXPECT_EQ(f(0).seen, "H,E,h,d:hit,d:!!!,e,");
}

TEST_F(FilterChainTest, AStreamedAnswerHeldBackByAnEarlierFilterIsToldWhenToGoOn) {
  // From a review: filter 1 streams its own answer (a cache hit); filter 0 suspends the
  // response (a WAF looking at it), so the answer queues up past the mark and filter 1 sees
  // response_blocked(). When filter 0 lets it through, filter 1 must hear on_response_ready:
  // before, only the handler (which an answer abandons) was woken, and the response hung.
  ChainLimits limits;
  limits.queue_high = 10;
  build(2, limits);
  http::ResponseHead hit;
  hit.status = 200;
  hit.framing = http::BodyFraming::kChunked;
  f(1).req_headers = [&](FilterContext& c, http::RequestHead&, bool) {
    c.send_response_headers(hit, false);
    return FilterStatus::kStop;
  };
  f(0).resp_headers = [](FilterContext&, http::ResponseHead&, bool) { return FilterStatus::kStop; };
  chain_.request_headers(true);
  FilterContext* answering = f(1).ctx;
  answering->send_response_data("0123456789", false);
  answering->send_response_data("abc", false);
  EXPECT_TRUE(answering->response_blocked());
  EXPECT_EQ(f(1).ready, 0);
  f(0).ctx->continue_response();
  EXPECT_FALSE(answering->response_blocked());
  EXPECT_EQ(f(1).ready, 1);
  answering->send_response_data("", true);
  EXPECT_EQ(stream_.client, "H,D:0123456789abc,D:,E,");
}

TEST_F(FilterChainTest, ListenerFiltersRunBeforeRoutingAndTheRoutesFiltersJoinAfter) {
  // f0 is the listener's, f1 and f2 the route's (appended when the head is routed).
  build(3);
  chain_.init(ptrs_.data(), 1, {}, /*route_after=*/true);
  std::string order;
  f(0).req_headers = [&](FilterContext&, http::RequestHead& h, bool) {
    order += "listener,";
    h.headers.add("X-Routed-On", "yes");  // what routing will see
    return FilterStatus::kContinue;
  };
  stream_.on_route = [&] {
    order += "route,";
    EXPECT_NE(stream_.req.headers.find("x-routed-on"), nullptr);
    chain_.append(ptrs_.data() + 1, 2, {});
  };
  chain_.request_headers(false);
  chain_.request_data("body", true);
  EXPECT_EQ(order, "listener,route,");
  EXPECT_EQ(f(1).seen, "H,D:body,E,");
  EXPECT_EQ(f(2).seen, "H,D:body,E,");
  EXPECT_EQ(stream_.target, "H,D:body,E,");
  respond_ok("ok");
  // The response passes the route's filters, then the listener's, last.
  EXPECT_EQ(f(2).seen, "H,D:body,E,h,d:ok,e,");
  EXPECT_EQ(f(0).seen, "H,D:body,E,h,d:ok,e,");
  EXPECT_EQ(stream_.client, "H,D:ok,E,");
}

TEST_F(FilterChainTest, AnEarlyAnswerAtRoutingPassesTheListenerFilters) {
  build(1);
  chain_.init(ptrs_.data(), 1, {}, /*route_after=*/true);
  stream_.on_route = [&] { chain_.local_reply(404, "no route\n", "text/plain"); };
  chain_.request_headers(true);
  EXPECT_EQ(stream_.client_status, 404);
  EXPECT_EQ(f(0).seen, "H,E,h,d:no route\n,e,");  // a listener filter sees the 404
  EXPECT_EQ(stream_.target, "");
}

TEST_F(FilterChainTest, AListenerFilterThatAnswersSkipsRouting) {
  build(1);
  chain_.init(ptrs_.data(), 1, {}, /*route_after=*/true);
  f(0).req_headers = [](FilterContext& c, http::RequestHead&, bool) {
    c.send_local_reply(301, "", "text/plain");
    return FilterStatus::kStop;
  };
  chain_.request_headers(true);
  EXPECT_EQ(stream_.routed, 0);
  EXPECT_EQ(stream_.client_status, 301);
}

TEST_F(FilterChainTest, RoutingWaitsForASuspendedListenerFilterAndTheBodyForRouting) {
  build(2);
  chain_.init(ptrs_.data(), 1, {}, /*route_after=*/true);
  f(0).req_headers = kStopFn;  // a lookup (an auth call) before routing
  stream_.on_route = [&] { chain_.append(ptrs_.data() + 1, 1, {}); };
  chain_.request_headers(false);
  chain_.request_data("early", false);  // arrives while the listener filter waits
  EXPECT_EQ(stream_.routed, 0);
  EXPECT_EQ(f(1).seen, "");
  f(0).ctx->continue_request();
  EXPECT_EQ(stream_.routed, 1);
  EXPECT_EQ(f(1).seen, "H,D:early,");  // the route's filter sees the body that waited
  EXPECT_EQ(stream_.target, "H,D:early,");
}

TEST_F(FilterChainTest, AnswerFromTheResponsePhaseReplacesTheTargetsResponse) {
  build(3);
  f(1).resp_headers = [](FilterContext& c, http::ResponseHead& h, bool) {
    if (h.status == 503) c.send_local_reply(200, "maintenance page\n", "text/html");
    return FilterStatus::kStop;
  };
  chain_.request_headers(true);
  stream_.resp.status = 503;
  chain_.response_headers(stream_.resp, false);
  EXPECT_TRUE(stream_.abandoned);
  EXPECT_EQ(stream_.client_status, 200);
  EXPECT_EQ(stream_.client, "H,D:maintenance page\n,E,");
  EXPECT_EQ(f(0).seen, "H,E,h,d:maintenance page\n,e,");
  EXPECT_EQ(f(2).seen, "H,E,h,");  // it saw the 503 before filter 1 replaced it
  // The target's late data goes nowhere.
  chain_.response_data("late", true);
  EXPECT_EQ(stream_.client, "H,D:maintenance page\n,E,");
}

TEST_F(FilterChainTest, AnswerAfterTheClientHasAHeadResetsTheClient) {
  build(1);
  f(0).resp_data = [](FilterContext& c, Body&, bool) {
    c.send_local_reply(500, "", "text/plain");
    return FilterStatus::kStop;
  };
  chain_.request_headers(true);
  stream_.resp.status = 200;
  chain_.response_headers(stream_.resp, false);
  chain_.response_data("x", false);
  EXPECT_TRUE(stream_.reset);
}

TEST_F(FilterChainTest, ResetWhileSuspendedTellsEveryFilterAndLateContinueDoesNothing) {
  build(2);
  f(0).req_headers = kStopFn;
  chain_.request_headers(false);
  FilterContext* ctx = f(0).ctx;
  chain_.reset();
  EXPECT_EQ(f(0).resets, 1);
  EXPECT_EQ(f(1).resets, 1);
  chain_.reset();  // once
  EXPECT_EQ(f(0).resets, 1);
  ctx->continue_request();
  EXPECT_EQ(stream_.target, "");
  chain_.destroy();
  EXPECT_EQ(f(0).destroyed, 1);
  EXPECT_EQ(f(1).destroyed, 1);
}

TEST_F(FilterChainTest, LateCompletionAfterTheStreamWasRecycledIsDropped) {
  build(1);
  f(0).req_headers = kStopFn;
  chain_.request_headers(false);
  StreamHandle h = f(0).ctx->handle();
  EXPECT_TRUE(h.valid());
  // The request ends (client gone) and the stream object serves the next request.
  chain_.reset();
  chain_.destroy();
  stream_.recycle();
  build(1);
  chain_.request_headers(true);
  EXPECT_EQ(stream_.target, "H,E,");
  // The first request's completion arrives now: its handle is stale, so it never resumes the
  // new request's chain.
  EXPECT_FALSE(h.valid());
}

TEST_F(FilterChainTest, ACallOnTheContextOfAnEndedStreamDoesNothing) {
  build(2);
  f(1).req_headers = kStopFn;
  chain_.request_headers(false);
  FilterContext* ctx = f(1).ctx;
  chain_.reset();  // the client went away while filter 1 waited
  ctx->continue_request();
  ctx->send_local_reply(500, "late\n", "text/plain");
  EXPECT_FALSE(ctx->response_blocked());
  chain_.destroy();
  ctx->continue_request();
  EXPECT_EQ(stream_.target, "");
  EXPECT_EQ(stream_.client, "");
}

TEST_F(FilterChainTest, AnswerThatWaitsBehindASuspendedFilterKeepsItsOwnCopyOfTheHead) {
  build(2);
  f(0).resp_headers = [](FilterContext&, http::ResponseHead&, bool) {
    return FilterStatus::kStop;
  };
  f(1).req_headers = [](FilterContext& c, http::RequestHead&, bool) {
    http::ResponseHead on_stack;  // gone when this callback returns
    on_stack.status = 203;
    on_stack.headers.add("X-From", "filter");
    c.send_response_headers(on_stack, true);
    return FilterStatus::kStop;
  };
  chain_.request_headers(true);
  EXPECT_EQ(stream_.client, "");  // held by filter 0
  f(0).ctx->continue_response();
  EXPECT_EQ(stream_.client_status, 203);
  EXPECT_EQ(stream_.client, "H,E,");
}

TEST_F(FilterChainTest, AnswerThatEndsTheStreamStopsTheChainSafely) {
  build(3);
  bool destroyed = false;
  stream_.on_client_end = [&] {
    if (destroyed) return;
    destroyed = true;
    chain_.destroy();  // the stream completes inside the answer
  };
  f(1).req_headers = [](FilterContext& c, http::RequestHead&, bool) {
    c.send_local_reply(204, "", "text/plain");
    return FilterStatus::kContinue;  // a filter that answers and still says continue
  };
  chain_.request_headers(false);
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(stream_.target, "");
  EXPECT_EQ(f(2).seen, "");
}

TEST_F(FilterChainTest, QueueAboveTheMarkPausesTheSourceUntilItDrains) {
  ChainLimits limits;
  limits.queue_high = 10;
  build(1, limits);
  f(0).req_headers = kStopFn;
  chain_.request_headers(false);
  chain_.request_data("0123456789", false);
  EXPECT_TRUE(stream_.request_pauses.empty());
  chain_.request_data("abc", false);
  ASSERT_EQ(stream_.request_pauses.size(), 1u);
  EXPECT_TRUE(stream_.request_pauses[0]);
  f(0).ctx->continue_request();
  ASSERT_EQ(stream_.request_pauses.size(), 2u);
  EXPECT_FALSE(stream_.request_pauses[1]);
  EXPECT_EQ(stream_.target, "H,D:0123456789abc,");
}

TEST_F(FilterChainTest, LocalReplyFromTheStreamIsSeenByEveryFilter) {
  build(2);
  chain_.request_headers(true);
  chain_.local_reply(502, "upstream reset\n", "text/plain");
  EXPECT_EQ(stream_.client_status, 502);
  EXPECT_EQ(f(0).seen, "H,E,h,d:upstream reset\n,e,");
  EXPECT_EQ(f(1).seen, "H,E,h,d:upstream reset\n,e,");
  EXPECT_FALSE(stream_.abandoned);  // the stream handles its own target
}

TEST_F(FilterChainTest, NoFiltersIsAStraightPipe) {
  build(0);
  chain_.request_headers(false);
  chain_.request_data("body", true);
  respond_ok("ok");
  EXPECT_EQ(stream_.target, "H,D:body,E,");
  EXPECT_EQ(stream_.client, "H,D:ok,E,");
}

}  // namespace
}  // namespace citadel::pipeline
