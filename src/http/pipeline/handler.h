// Handlers: the target that generates a route's response (h2o's handlers; Envoy's router is
// the terminal filter in the same role). A cluster (the proxy), a platform service, a static
// directory, a redirect and a fixed response are all handlers.
//
// The stream creates one Handler per request, in the request's arena, from the route's
// HandlerFactory once the route's filters have passed the request head on. The handler sees the
// request body in pieces (after the filters) and answers through HandlerContext; the response
// goes back through the route's filters. A handler may answer later (after a database reply or
// a blocking job): it keeps the context and calls it from a callback on the same worker, or
// checks handle().valid() first when the callback may come after the stream ended.
// Worker thread only.
#pragma once

#include <memory>
#include <string_view>

#include "core/arena.h"
#include "core/buffer.h"
#include "core/config_reader.h"
#include "core/event_loop.h"
#include "http/message.h"
#include "http/pipeline/build_context.h"
#include "http/pipeline/stream_info.h"
#include "http/stream.h"

namespace citadel::pipeline {

// What a handler may do; implemented by the stream. Valid until Handler::on_reset() or the end
// of the response.
class HandlerContext {
 public:
  // The request head as the filters left it (a proxy may still change it: hop-by-hop fields).
  virtual http::RequestHead& request() = 0;
  // The path the route matched: normalised (dot segments resolved, slashes merged or escaped
  // slashes handled as the listener says), the one a target serves.
  virtual std::string_view route_path() const = 0;
  // Fill this, then send_response_headers().
  virtual http::ResponseHead& response_head() = 0;
  // An interim 1xx response (not 101).
  virtual void send_informational(const http::ResponseHead& head) = 0;
  // The response (through the filters to the client). send_response_data(.., true) or
  // send_response_trailers() may end the stream: return right after them.
  virtual void send_response_headers(bool end_stream) = 0;
  virtual void send_response_data(std::string_view data, bool end_stream) = 0;
  virtual void send_response_trailers(const http::HeaderMap& trailers) = 0;
  // Answer with a short local response (an upstream error: 502, 503, 504), or reset the
  // client's stream when the response has already started.
  virtual void send_local_reply(int status, std::string_view body) = 0;
  // Aborts the client's stream: a response that started cannot be completed.
  virtual void reset_stream() = 0;
  // Backpressure: true while the client (or a filter) cannot take more; wait for
  // Handler::on_response_ready().
  virtual bool response_blocked() const = 0;
  // Request body flow control: stop or resume on_request_data() delivery.
  virtual void pause_request_body() = 0;
  virtual void resume_request_body() = 0;

  virtual core::Arena& arena() = 0;
  virtual core::BlockPool& blocks() = 0;
  virtual WorkerContext& worker() = 0;
  virtual StreamHandle handle() = 0;
  virtual StreamInfo& info() = 0;
  virtual const http::ConnectionInfo& connection() const = 0;
  core::EventLoop& loop() { return worker().loop(); }

 protected:
  ~HandlerContext() = default;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // The request head has passed the filters. end_stream: no body follows.
  virtual void on_request_headers(HandlerContext& ctx, bool end_stream) = 0;
  // Body pieces after the filters; the data is valid during the call only.
  virtual void on_request_data(HandlerContext&, std::string_view /*data*/, bool /*end*/) {}
  // The body ended with trailer fields (forwardable ones; valid during the call), in place of
  // on_request_data({}, true).
  virtual void on_request_trailers(HandlerContext& ctx, const http::HeaderMap&) {
    on_request_data(ctx, {}, true);
  }
  // After a 101 answer: raw bytes from the client (end: the client half-closed).
  virtual void on_tunnel_data(HandlerContext&, std::string_view /*data*/, bool /*end*/) {}
  // The client (and the filters) can take more response data.
  virtual void on_response_ready(HandlerContext&) {}
  // The stream is gone or a filter answered instead: release everything, answer nothing.
  virtual void on_reset() {}
};

// Built once per snapshot from the route's config; create() runs on workers concurrently.
class HandlerFactory {
 public:
  virtual ~HandlerFactory() = default;
  // Placement-constructs the handler in `arena`; the stream calls its destructor.
  virtual Handler* create(core::Arena& arena) const = 0;
};

// A platform service mounted as a route target (`to: { service: NAME }`), with its options from
// the top-level `services: { NAME: {...} }`. Registered once at start-up (cli wiring), like a
// filter's parser; parse() runs on the control thread for every load, reload and snapshot (see
// build_context.h). Two routes naming one service get a factory each; what they must share (a
// database, a key set) is kept with ctx.state().
class ServiceConfigParser {
 public:
  virtual ~ServiceConfigParser() = default;
  virtual std::string_view name() const = 0;
  // Errors go to `options.error()`; return nullptr then. `options` may be absent (no entry
  // under `services:`): the service's defaults.
  virtual std::unique_ptr<HandlerFactory> parse(const core::ConfigNode& options,
                                                BuildContext& ctx) const = 0;
};

}  // namespace citadel::pipeline
