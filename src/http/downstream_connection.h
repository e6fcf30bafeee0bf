// A downstream connection as its listener's owner (a worker, the admin listener) holds it,
// whatever protocol it speaks: HTTP/1.1 today (http1::ServerConnection), HTTP/2 next, and a TLS
// handshake that has not chosen its codec yet. The owner keeps them in one intrusive list, asks
// them to close for a drain or a shutdown, and learns when each has closed. Everything here runs
// on the owner's loop thread.
#pragma once

#include <string_view>

#include "core/event_loop.h"
#include "http/stream.h"

namespace citadel::http {

// Deleted through core::Deferred (EventLoop::defer_delete) once it has reported its close.
class DownstreamConnection : public core::Deferred {
 public:
  // Registers with the loop and starts reading. False: it cannot run; abort() it.
  virtual bool start() = 0;
  // Closes an idle connection now, or asks a busy one to close after its responses (drain).
  virtual void close_when_idle() = 0;
  // Closes now, resetting any request in flight (shutdown after a drain timeout).
  virtual void abort() = 0;

  // Intrusive list links for the owner's connection list, and the owner's tag for it (the
  // worker: the listener that accepted the connection).
  DownstreamConnection* prev = nullptr;
  DownstreamConnection* next = nullptr;
  void* owner_tag = nullptr;
};

// The owner's side of a connection's life, for every protocol.
class ConnectionOwner {
 public:
  // The connection has closed; the owner unlinks it and hands it to defer_delete.
  virtual void on_connection_closed(DownstreamConnection& conn) = 0;
  // True while the owner drains: responses carry Connection: close, idle connections close.
  virtual bool draining() const = 0;
  // A request was refused as malformed or over a limit (answered with `status`; 0 when the
  // connection ended without an answer, as an HTTP/2 flood's GOAWAY); `reason` is
  // short static text ("invalid request line"). `info` is the connection when the request never
  // reached a stream (a malformed head: the owner logs it), nullptr when its stream did (a
  // malformed body: the stream logs it).
  virtual void on_protocol_error(const ConnectionInfo* info, int status, std::string_view reason) {
    (void)info, (void)status, (void)reason;
  }
  // The current HTTP date, for the Date field of every response that lacks one (the owner
  // formats it once per second for all its connections).
  virtual std::string_view http_date() = 0;

 protected:
  ~ConnectionOwner() = default;
};

}  // namespace citadel::http
