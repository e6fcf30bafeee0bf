// The seam between a protocol codec (HTTP/1.1 today, HTTP/2 next) and the request pipeline.
//
// A codec turns bytes into streams: for each request it asks a StreamFactory for a
// StreamHandler, parses the head into the handler's RequestHead, and delivers the body in
// pieces. The handler answers through the ServerStream the codec gives it. Everything here
// runs on the worker thread that owns the connection.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/arena.h"
#include "http/message.h"
#include "http/path.h"

namespace citadel::http {

// What a TLS transport learned in its handshake. The transport owns the strings; they live as
// long as the connection.
struct TlsInfo {
  std::string_view sni;           // the server name the client asked for; empty: none
  std::string_view alpn;          // the protocol ALPN chose ("h2", "http/1.1"); empty: none
  std::string_view peer_subject;  // the client certificate's subject, one line; empty: none
};

// What the pipeline knows of the downstream connection.
struct ConnectionInfo {
  char peer_ip[46] = {0};  // textual address of the client
  uint16_t peer_port = 0;
  bool tls = false;
  PathNormalizeOptions path_options;  // the listener's path handling
  // The accepting listener, by the id its name keeps for the process's life (see
  // proxy::Snapshot::listener_ids); 0: none. (In padding: an idle connection pays nothing.)
  uint32_t listener_id = 0;
  uint64_t id = 0;
  // Filled by a TLS transport; nullptr on a plain connection, which so pays one pointer for it.
  const TlsInfo* tls_info = nullptr;

  std::string_view sni() const { return tls_info != nullptr ? tls_info->sni : std::string_view(); }
  std::string_view alpn() const {
    return tls_info != nullptr ? tls_info->alpn : std::string_view();
  }
  std::string_view peer_subject() const {
    return tls_info != nullptr ? tls_info->peer_subject : std::string_view();
  }
};

// Implemented by the codec. The handler sends its response through it.
class ServerStream {
 public:
  // Interim 1xx response (not 101: use send_headers for that).
  virtual void send_informational(const ResponseHead& head) = 0;
  // The final response head. `head.framing`/`content_length` say how the body is delimited;
  // the codec writes the framing headers itself. After a 101 the stream becomes a tunnel.
  virtual void send_headers(ResponseHead& head, bool end_stream) = 0;
  // Body bytes (copied). Call with end_stream=true exactly once, possibly with empty data.
  virtual void send_data(std::string_view data, bool end_stream) = 0;
  // Ends the body with trailer fields (copied), instead of send_data(..., true). HTTP/1.1 can
  // carry them only in a chunked response: otherwise the body just ends.
  virtual void send_trailers(const HeaderMap& trailers) = 0;
  // True while the downstream send buffer is above its high watermark: stop producing until
  // StreamHandler::on_write_ready().
  virtual bool write_blocked() const = 0;
  // Request body flow control: stop or resume on_request_data() delivery.
  virtual void pause_request_body() = 0;
  virtual void resume_request_body() = 0;
  // Aborts the stream (HTTP/1: closes the connection). No callbacks follow.
  virtual void reset() = 0;
  // Asks the codec to close the connection once this response is complete.
  virtual void close_after_response() = 0;
  virtual const ConnectionInfo& connection() const = 0;

 protected:
  ~ServerStream() = default;
};

// Implemented by the request pipeline (proxy::ActiveStream) and handed out by a StreamFactory.
class StreamHandler {
 public:
  // Storage the codec parses the request head into, valid for the stream's life.
  virtual RequestHead& request_head() = 0;
  virtual core::Arena& arena() = 0;
  // The head is complete and its strings live in arena(). end_stream: no body follows. The
  // handler may clear request_head().upgrade to refuse a protocol switch: the codec then treats
  // the request as a plain one (it reads the flag back when this call returns).
  virtual void on_request_headers(bool end_stream) = 0;
  virtual void on_request_data(std::string_view data, bool end_stream) = 0;
  // The request body ended with trailer fields (their strings stay valid for the stream's life),
  // in place of on_request_data({}, true). By default they are ignored.
  virtual void on_request_trailers(const HeaderMap& /*trailers*/) { on_request_data({}, true); }
  // The downstream send buffer drained below its low watermark.
  virtual void on_write_ready() = 0;
  // The downstream went away or the codec gave up (timeout, protocol error). No further calls
  // into the ServerStream are allowed; the handler releases itself via on_complete() later.
  // `answered`: the status the codec answered the client with in the stream's place (a 400 for
  // a malformed body, a 408, a 504), or 0 when the client got nothing more.
  virtual void on_reset(std::string_view reason, int answered) = 0;
  // The codec is done with this stream (response fully written, or reset). Last call.
  virtual void on_complete() = 0;

 protected:
  ~StreamHandler() = default;
};

class StreamFactory {
 public:
  virtual StreamHandler* new_stream(ServerStream& downstream) = 0;

 protected:
  ~StreamFactory() = default;
};

}  // namespace citadel::http
