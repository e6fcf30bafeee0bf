// The HTTP/1.1 client codec for upstream connections.
//
// Owned by a connection pool on one worker (created on demand, destroyed through
// EventLoop::defer_delete after close); all methods run on that worker's thread. One request at
// a time; the pool reuses the connection when both directions ended cleanly with keep-alive.
// It reads and writes through a Transport (http/transport/) and owns no descriptor:
// connect_plain() opens a socket and builds the codec and its transport as one object.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string_view>

#include "core/arena.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/http1/chunked.h"
#include "http/http1/parser.h"
#include "http/message.h"
#include "http/upstream.h"
#include "http/transport/socket_transport.h"
#include "http/transport/tls_transport.h"
#include "http/transport/transport.h"

namespace citadel::http::http1 {

using ClientFailure = http::UpstreamFailure;
using ClientCallbacks = http::UpstreamCallbacks;
inline constexpr size_t kClientFailureKinds = http::kUpstreamFailureKinds;
using http::failure_name;

class ClientConnection;

// The pool's side: learns when a connection may be reused or has gone.
class ClientOwner {
 public:
  virtual void on_client_idle(ClientConnection& c) = 0;
  virtual void on_client_closed(ClientConnection& c) = 0;

 protected:
  ~ClientOwner() = default;
};

// The codec over any transport. Its overrides are final; the only derived classes are
// WithTransport<ClientConnection, T>, which add the transport's storage.
class ClientConnection : public core::Deferred,
                         public core::IoHandler,
                         public core::LoopTask,
                         public http::UpstreamStream {
 public:
  // Runs over `transport`, whose connect is in progress (or done) and which must outlive the
  // codec (see WithTransport).
  ClientConnection(Transport& transport, core::EventLoop& loop, core::BlockPool& pool,
                   ClientOwner& owner);
  ~ClientConnection() override = default;

  // Registers with the loop; the connect completes (or fails) from there. False: it cannot run
  // (the caller deletes it; no callback was made).
  bool start();
  bool connected() const final { return state_ != State::kConnecting; }

  void attach(ClientCallbacks* cb) final { cb_ = cb; }
  void detach() final { cb_ = nullptr; }

  // Writes the request line and fields. `head.framing`/`content_length` select the framing
  // this codec writes (Content-Length or chunked); hop-by-hop fields are the caller's job.
  void send_head(const RequestHead& head, std::string_view target) final;
  // Request body bytes; `trailers` (with end_stream) end a chunked body with those fields.
  void send_data(std::string_view data, bool end_stream,
                 const HeaderMap* trailers = nullptr) final;
  // After a 101: raw bytes both ways; end_stream half-closes the upstream write side.
  void send_tunnel(std::string_view data, bool end_stream) final;
  bool write_blocked() const final { return out_.size() > kHighWatermark; }

  // Response backpressure: stop or resume reading the socket.
  void pause_reading() final { read_paused_ = true; }
  void resume_reading() final;

  // Closes now; no callback to the attached request.
  void close() final;
  bool closed() const { return state_ == State::kClosed; }

  void on_io(uint32_t events) final;
  void run_task() final;

  // Armed by the pool while the connection waits idle; closes it when it fires.
  core::Timer idle_timer;

  static constexpr size_t kHighWatermark = 256 * 1024;
  static constexpr size_t kLowWatermark = 64 * 1024;

 private:
  enum class State : uint8_t { kConnecting, kIdle, kActive, kTunnel, kClosed };
  void do_read();
  void process();
  void flush();
  void fail(ClientFailure kind, std::string_view detail);
  static void on_idle_timeout(void* self);
  void response_complete();

  Transport& transport_;
  core::EventLoop& loop_;
  ClientOwner& owner_;
  ClientCallbacks* cb_ = nullptr;
  core::Buffer in_;
  core::Buffer out_;
  ChunkedDecoder chunked_;
  State state_ = State::kConnecting;
  BodyFraming resp_framing_ = BodyFraming::kNone;
  uint64_t resp_remaining_ = 0;
  uint64_t requests_ = 0;
  int informational_ = 0;  // 1xx responses to the current request
  bool head_request_ = false;
  bool chunked_out_ = false;
  bool counted_out_ = false;   // the request body is Content-Length framed: body_left_ counts
  bool framing_broken_ = false;  // the body did not match: fail from the next task
  bool write_shut_ = false;      // a tunnel's write side is half-closed
  uint64_t body_left_ = 0;
  bool request_done_ = false;
  bool head_received_ = false;
  bool keep_alive_ = true;
  bool read_paused_ = false;
  bool read_pending_ = false;
  bool eof_ = false;
  bool peer_closed_ = false;  // EPOLLRDHUP seen: read until EOF
  bool was_blocked_ = false;
  bool in_process_ = false;
};

// The HTTP/1.1 client codec over a plain socket, in one allocation.
using PlainClientConnection = WithTransport<ClientConnection, SocketTransport>;

// The HTTP/1.1 client codec over TLS, in one allocation.
using TlsClientConnection = WithTransport<ClientConnection, TlsTransport>;

// Starts a TLS connection to `addr` with `ssl` (from a TlsClientContext; taken, freed on
// failure): the handshake runs once TCP is up, and the codec reports the connection ready after
// it (a failed verification is a connect failure whose detail says why).
ClientConnection* connect_tls(const sockaddr* addr, socklen_t len, SSL* ssl, core::EventLoop& loop,
                              core::BlockPool& pool, ClientOwner& owner);

// Starts a plain connection to `addr` with its codec, registered with `loop`. nullptr when no
// socket could be created or the connect failed at once (errno set); no callback is made then.
ClientConnection* connect_plain(const sockaddr* addr, socklen_t len, core::EventLoop& loop,
                                core::BlockPool& pool, ClientOwner& owner);

}  // namespace citadel::http::http1
