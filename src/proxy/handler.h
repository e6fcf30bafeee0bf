// In-process route targets: a Handler generates the response itself (fixed responses and
// redirects today; platform services such as identity, data and files next).
//
// The request pipeline (ActiveStream) creates one Handler per request, in the request's arena,
// from the route's HandlerFactory once the route's filters have passed the request on. The
// handler sees the request body in pieces and answers through HandlerContext; the response goes
// back through the route's filters like a proxied one. A handler may answer later (after a
// database reply): it just keeps the context and calls it from a callback on the same worker.
// Worker thread only.
#pragma once

#include <string_view>

#include "core/arena.h"
#include "core/event_loop.h"
#include "http/message.h"

namespace citadel::proxy {

// What a handler may do; implemented by ActiveStream. Valid until on_reset() or the response's
// end_stream.
class HandlerContext {
 public:
  virtual const http::RequestHead& request() const = 0;
  // Fill this, then send_response_headers().
  virtual http::ResponseHead& response_head() = 0;
  virtual void send_response_headers(bool end_stream) = 0;
  virtual void send_response_data(std::string_view data, bool end_stream) = 0;
  // Backpressure: true while the client is slow; wait for Handler::on_write_ready().
  virtual bool response_blocked() const = 0;
  virtual void pause_request_body() = 0;
  virtual void resume_request_body() = 0;
  virtual core::Arena& arena() = 0;
  virtual core::EventLoop& loop() = 0;

 protected:
  ~HandlerContext() = default;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // The request head has passed the filters. end_stream: no body follows.
  virtual void on_request_headers(HandlerContext& ctx, bool end_stream) = 0;
  virtual void on_request_data(HandlerContext&, std::string_view /*data*/, bool /*end*/) {}
  virtual void on_write_ready(HandlerContext&) {}
  // The client went away: drop the context, answer nothing.
  virtual void on_reset() {}
};

// Built once per snapshot from the route's config; create() runs on workers concurrently.
class HandlerFactory {
 public:
  virtual ~HandlerFactory() = default;
  // Placement-constructs the handler in `arena`; the stream calls its destructor.
  virtual Handler* create(core::Arena& arena) const = 0;
};

}  // namespace citadel::proxy
