// Fuzzes the HTTP/2 server codec (nghttp2 under Citadel's stream, flow-control and flood code)
// with whole client byte streams: the client preface, then the input as frames, delivered in
// two reads. Each request stream gets a handler that answers at once (a small body, trailers on
// every third stream, a reset on every fifth), so streams end in every way while frames still
// arrive. The input may say more than once "run the codec's task" (a 0xFF byte), so that held
// bodies, resumes and sends interleave with reading. Checks: no crash or sanitizer report, every
// handler completes exactly once, the connection closes cleanly when aborted.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "../tests/unit/http/transport/fake_transport.h"
#include "core/arena.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/http2/server_connection.h"

using namespace citadel;
using namespace citadel::http;

namespace {

int g_open = 0;  // handlers created and not yet completed

class Handler final : public StreamHandler {
 public:
  Handler(ServerStream& s, int n) : s_(s), n_(n) { ++g_open; }
  RequestHead& request_head() override { return head_; }
  core::Arena& arena() override { return arena_; }
  void on_request_headers(bool end_stream) override {
    if (n_ % 5 == 4) {
      s_.reset();  // completes us
      return;
    }
    if (!end_stream && n_ % 2 == 0) {
      s_.pause_request_body();  // body held until the task resumes it
      paused_ = true;
    }
    answer();
  }
  void on_request_data(std::string_view, bool) override {
    if (paused_) {
      paused_ = false;
      s_.resume_request_body();
    }
  }
  void on_write_ready() override {}
  void on_reset(std::string_view, int) override {}
  void on_complete() override {
    if (done_) std::abort();  // exactly once
    done_ = true;
    --g_open;
    delete this;
  }

 private:
  void answer() {
    ResponseHead r;
    r.status = 200;
    r.headers.add("content-type", "text/plain");
    r.framing = BodyFraming::kChunked;
    s_.send_headers(r, false);
    if (n_ % 3 == 2) {
      s_.send_data("partial", false);
      HeaderMap t;
      t.add("grpc-status", "0");
      s_.send_trailers(t);
    } else {
      s_.send_data("ok", true);
    }
  }
  ServerStream& s_;
  int n_;
  RequestHead head_;
  core::Arena arena_;
  bool paused_ = false;
  bool done_ = false;
};

class Factory final : public StreamFactory {
 public:
  StreamHandler* new_stream(ServerStream& s) override { return new Handler(s, count_++); }

 private:
  int count_ = 0;
};

class Owner final : public ConnectionOwner {
 public:
  void on_connection_closed(DownstreamConnection&) override { closed = true; }
  bool draining() const override { return false; }
  std::string_view http_date() override { return "Tue, 01 Dec 2026 00:00:00 GMT"; }
  bool closed = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static core::EventLoop loop;
  core::BlockPool pool;
  Factory factory;
  Owner owner;
  auto settings = std::make_shared<ServerSettings>();
  settings->http2.max_concurrent_streams = 16;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  {
    testing::FakeTransport transport;
    ConnectionInfo info;
    auto* conn = new http2::ServerConnection(transport, info, settings, loop, pool, factory,
                                             owner, http2::kClientPreface);
    if (conn->start()) {
      // Pieces separated by 0xFF: each is one read, followed by a turn of the codec's task.
      size_t start = 0;
      int turns = 0;
      while (start <= in.size() && !owner.closed && turns < 64) {
        size_t end = in.find('\xff', start);
        if (end == std::string_view::npos) end = in.size();
        if (end > start) transport.deliver(in.substr(start, end - start));
        conn->on_io(0x001 /* EPOLLIN */);
        if (!owner.closed) conn->run_task();
        start = end + 1;
        ++turns;
      }
      if (!owner.closed) conn->abort();
    }
    if (!owner.closed) conn->abort();
    delete conn;
  }
  loop.clear_graveyard();
  if (g_open != 0) std::abort();  // a handler never completed
  return 0;
}
