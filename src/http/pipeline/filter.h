// Filters: the request pipeline's interface for code that inspects or changes requests and
// responses on their way through (h2o's and Envoy's filters).
//
// A filter sees the request on its way in (head, body pieces, trailers) and the response on its
// way out, in reverse order. Every callback returns what the chain does next:
//   kContinue       pass on to the next filter.
//   kStop           suspend here: nothing passes this filter until it calls continue_request()
//                   (request phases) or continue_response() (response phases), later, on the same
//                   worker (a Redis reply, a cache fill). The piece it returned kStop on is held
//                   and passes on at the resume; what arrives meanwhile waits at the chain's
//                   entrance and then passes every filter in order (the reader is paused once a
//                   little has queued).
//   kStopAndBuffer  collect the rest of the body here: the filter is called once more, with the
//                   whole body (end_stream true, or false when trailers follow) once it is
//                   complete. On a head, the head waits here too until then. Bounded by the
//                   route's buffer limit: overflow answers 413 (request) or 500 (response).
// Bodies may be changed (see Body). A filter that changes a body's size must say so in its
// head phase: drop Content-Length for chunked framing (head.framing = kChunked), or collect the
// body (kStopAndBuffer) and set the head's content_length to the new size before it goes on.
// A body that does not match the Content-Length its head announced is never sent as it is: the
// request fails (500) or the response is cut short.
//
// A filter may also answer (send_local_reply, or send_response_headers and data): the filters
// after it and the target are skipped and the filters before it see the response. On a response
// phase the answer replaces the target's response if the client has not seen its head yet.
//
// Filter objects are created per request in the request's arena by their FilterFactory and
// destroyed when the request ends; on_reset() says the stream is gone (cancel pending work;
// touch nothing after). Worker thread only.
#pragma once

#include <memory>
#include <string_view>
#include <utility>

#include "core/arena.h"
#include "core/config_reader.h"
#include "core/event_loop.h"
#include "http/headers.h"
#include "http/message.h"
#include "http/pipeline/body.h"
#include "http/pipeline/build_context.h"
#include "http/pipeline/stream_info.h"
#include "http/stream.h"

namespace citadel::pipeline {

enum class FilterStatus { kContinue, kStop, kStopAndBuffer };

// What a filter may do to its stream; one per filter and stream, implemented by the chain.
class FilterContext {
 public:
  // Resume after kStop on a request phase / a response phase. Safe to call from inside the
  // filter's own callback (it takes effect when the callback returns) and after the stream has
  // ended (it does nothing then). Once the stream object serves another request the filter is
  // destroyed and its context serves the new one: a completion checks its StreamHandle
  // (handle().valid()) before it touches the filter or its context. Resuming or answering may
  // complete the stream and destroy this filter: return right after these calls.
  virtual void continue_request() = 0;
  virtual void continue_response() = 0;

  // Answer from this filter with a short body (no body when empty).
  virtual void send_local_reply(int status, std::string_view body,
                                std::string_view content_type = "text/plain") = 0;
  // Answer from this filter with a head and a streamed body: `head` is used during the call;
  // then send_response_data(..., true) or send_response_trailers() ends it. Backpressure: while
  // response_blocked() is true, stop producing until Filter::on_response_ready().
  virtual void send_response_headers(http::ResponseHead& head, bool end_stream) = 0;
  virtual void send_response_data(std::string_view data, bool end_stream) = 0;
  virtual void send_response_trailers(const http::HeaderMap& trailers) = 0;
  virtual bool response_blocked() const = 0;

  virtual core::Arena& arena() = 0;
  virtual WorkerContext& worker() = 0;
  virtual StreamHandle handle() = 0;
  virtual StreamInfo& info() = 0;
  virtual const http::ConnectionInfo& connection() const = 0;
  virtual std::string_view route_name() const = 0;
  core::EventLoop& loop() { return worker().loop(); }

 protected:
  ~FilterContext() = default;
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual FilterStatus on_request_headers(FilterContext&, http::RequestHead&, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  // `data` may be changed in place (see Body); end_stream: the last piece.
  virtual FilterStatus on_request_data(FilterContext&, Body& /*data*/, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_request_trailers(FilterContext&, http::HeaderMap&) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_response_headers(FilterContext&, http::ResponseHead&, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_response_data(FilterContext&, Body& /*data*/, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_response_trailers(FilterContext&, http::HeaderMap&) {
    return FilterStatus::kContinue;
  }
  // A response this filter is sending (send_response_headers) may continue: the client drained.
  virtual void on_response_ready(FilterContext&) {}
  // The stream is gone (client reset, timeout): no further calls follow except the destructor.
  virtual void on_reset() {}
};

// Built once per config snapshot from the filter's options; creates a Filter per request.
// create() runs on workers concurrently, so a factory is immutable after construction.
class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  // Placement-constructs the filter in `arena`; the stream calls its destructor.
  virtual Filter* create(core::Arena& arena) const = 0;
};

// Parses a filter's options into a factory, for every snapshot (see build_context.h: metrics
// and kept state come from `ctx`). Errors go to `node.error()`; return nullptr then.
class FilterConfigParser {
 public:
  virtual ~FilterConfigParser() = default;
  virtual std::string_view name() const = 0;
  virtual std::unique_ptr<FilterFactory> parse(const core::ConfigNode& node,
                                               BuildContext& ctx) const = 0;
};

template <class T, class... Args>
T* arena_new(core::Arena& arena, Args&&... args) {
  void* mem = arena.allocate_aligned(sizeof(T), alignof(T));
  return new (mem) T(std::forward<Args>(args)...);
}

}  // namespace citadel::pipeline
