// The upstream seam: one request/response exchange with an upstream, whatever carries it (an
// HTTP/1 connection today, an HTTP/2 stream next), and the callbacks of the request using it.
//
// A proxy (proxy::ClusterHandler) drives an UpstreamStream it got from a pool and receives the
// response through UpstreamCallbacks. Everything runs on the worker thread that owns the
// stream; a callback may detach and close the stream it came from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/arena.h"
#include "http/headers.h"
#include "http/message.h"

namespace citadel::http {

enum class UpstreamFailure : uint8_t {
  kConnectFailure,  // the connect failed or was refused
  kReset,           // closed or errored before a complete response head
  kResetAfterHead,  // closed in the middle of a response body
  kProtocolError,   // the upstream's response is malformed (head or body framing)
  kRequestFraming,  // the request's body did not match its Content-Length (a filter changed
                    // it): never sent on, the exchange closed
};
inline constexpr size_t kUpstreamFailureKinds = 5;

// Interim (1xx) responses an upstream may send before its final one; more is a protocol error
// (each is passed on to the client, so an endless series would be buffered without end).
inline constexpr int kMaxInformational = 16;

// A short name for each kind, for metrics labels and logs ("connect_failure", ...).
std::string_view failure_name(UpstreamFailure kind);

// The request that currently uses an upstream stream.
class UpstreamCallbacks {
 public:
  virtual ResponseHead& response_head() = 0;
  virtual core::Arena& arena() = 0;
  virtual void on_connected() = 0;
  virtual void on_informational(const ResponseHead& head) = 0;
  // `head` strings live in arena(). end_stream: no body follows.
  virtual void on_response_headers(bool end_stream) = 0;
  virtual void on_response_data(std::string_view data, bool end_stream) = 0;
  // The response body ended with trailer fields, in place of on_response_data({}, true). The
  // strings are valid during the call only. By default they are ignored.
  virtual void on_response_trailers(const HeaderMap& /*trailers*/) {
    on_response_data({}, true);
  }
  // The send side drained below its low watermark (request body backpressure).
  virtual void on_upstream_write_ready() = 0;
  // The exchange failed; the callbacks are detached and nothing more follows.
  virtual void on_failure(UpstreamFailure kind, std::string_view detail) = 0;

 protected:
  ~UpstreamCallbacks() = default;
};

class UpstreamStream {
 public:
  // The request that receives this stream's callbacks (nullptr: none).
  virtual void attach(UpstreamCallbacks* cb) = 0;
  virtual void detach() = 0;
  // False while the transport to the upstream is still being set up.
  virtual bool connected() const = 0;
  // The request head; `head.framing`/`content_length` select the framing the stream writes.
  virtual void send_head(const RequestHead& head, std::string_view target) = 0;
  // Body bytes; `trailers` (with end_stream) end the body with those fields where the protocol
  // can carry them.
  virtual void send_data(std::string_view data, bool end_stream,
                         const HeaderMap* trailers = nullptr) = 0;
  // After a 101: raw bytes; end_stream half-closes toward the upstream.
  virtual void send_tunnel(std::string_view data, bool end_stream) = 0;
  // True while the send side is above its high watermark: wait for on_upstream_write_ready().
  virtual bool write_blocked() const = 0;
  // Response backpressure: stop or resume delivering response data.
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // Abandons the exchange (never reused); no callback follows.
  virtual void close() = 0;

 protected:
  ~UpstreamStream() = default;
};

}  // namespace citadel::http
