// The HTTP/2 client codec (RFC 9113) over libnghttp2, for clusters with `protocol: h2`: one
// upstream connection carrying many exchanges at once, each an http::UpstreamStream (the same
// seam as an HTTP/1.1 upstream connection, so ClusterHandler drives both alike).
//
// A pool (proxy::EndpointPool) opens streams on a connection while it has room under the
// server's SETTINGS_MAX_CONCURRENT_STREAMS, learns through ClientOwner when room frees up and
// when the connection has gone, and closes connections that stay without streams. Requests may
// be submitted while the connection is still being set up (TCP, TLS with ALPN h2, or h2c with
// prior knowledge): they leave once it is.
//
// Flow control both ways with bounded buffers: a request body waits in its stream's buffer
// (write_blocked() above the watermark) until the server's windows take it; response DATA is
// acknowledged only as the request using it takes it, so a paused response holds at most its
// window. A GOAWAY stops new streams; streams the server did not take fail as resets (retryable
// by the cluster's policy), the others finish. Worker thread only; destroyed through
// EventLoop::defer_delete after the owner learnt it closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/timer_wheel.h"
#include "http/transport/socket_transport.h"
#include "http/transport/tls_transport.h"
#include "http/transport/transport.h"
#include "http/upstream.h"

struct nghttp2_session;

namespace citadel::http::http2 {

class ClientConnection;
class ClientStream;
class NvList;

// The pool's side of an HTTP/2 upstream connection.
class ClientOwner {
 public:
  // A stream ended or the server's settings arrived: the connection may take more streams.
  // Called from the loop (never from inside a stream's callbacks).
  virtual void on_h2_capacity(ClientConnection& c) = 0;
  // The connection closed (every stream on it has been failed or had finished); the owner
  // forgets it and hands it to defer_delete.
  virtual void on_h2_closed(ClientConnection& c) = 0;

 protected:
  ~ClientOwner() = default;
};

class ClientConnection : public core::Deferred, public core::IoHandler, public core::LoopTask {
 public:
  // Over `transport`, whose connect is in progress; `tls`: the transport is TLS (ALPN must
  // choose h2), else h2c with prior knowledge.
  ClientConnection(Transport& transport, core::EventLoop& loop, core::BlockPool& pool,
                   ClientOwner& owner, bool tls);
  ~ClientConnection() override;

  // Registers with the loop. False: it cannot run (the caller deletes it; no callback).
  bool start();
  bool connected() const { return connected_; }
  // True while a new stream fits: not closed, no GOAWAY, below the server's stream limit.
  bool can_open() const;
  // A new exchange on this connection (nullptr when !can_open()).
  UpstreamStream* open_stream();
  size_t streams() const { return streams_; }
  // Closes now: streams still attached fail (reset), the owner hears on_h2_closed.
  void close();
  bool closed() const { return closed_; }

  void on_io(uint32_t events) final;
  void run_task() final;

  // Armed by the pool while the connection has no streams.
  core::Timer idle_timer;

  static constexpr size_t kHighWatermark = 256 * 1024;
  static constexpr size_t kLowWatermark = 64 * 1024;

 private:
  friend class ClientStream;
  friend struct ClientCallbacks;

  void do_read();
  void send();
  void flush();
  // Every stream fails with `kind` (detail for logs), then the connection closes.
  void fail_all(UpstreamFailure kind, std::string_view detail);
  void link(ClientStream* s);
  void unlink(ClientStream* s);
  static void on_idle_timeout(void* self);

  Transport& transport_;
  core::EventLoop& loop_;
  core::BlockPool& pool_;
  ClientOwner& owner_;
  nghttp2_session* session_ = nullptr;
  std::unique_ptr<NvList> nv_;  // reused for every request head (http2/nv_list.h)
  core::Buffer in_;
  core::Buffer out_;
  ClientStream* head_ = nullptr;
  size_t streams_ = 0;
  bool tls_;
  bool connected_ = false;
  bool closed_ = false;
  bool goaway_ = false;
  bool in_callback_ = false;
  bool capacity_changed_ = false;  // tell the owner from the task
  bool read_pending_ = false;
  bool pending_close_ = false;  // closed from inside nghttp2: done once it returns
  UpstreamFailure pending_kind_ = UpstreamFailure::kReset;
  std::string pending_detail_;
};

using PlainClientConnection = WithTransport<ClientConnection, SocketTransport>;
using TlsClientConnection = WithTransport<ClientConnection, TlsTransport>;

// Starts an HTTP/2 connection to `addr`: over TLS with `ssl` (its context offers ALPN h2; taken,
// freed on failure) or, with `ssl` nullptr, h2c with prior knowledge. nullptr (errno set) when
// no socket could be made; no callback is made then.
ClientConnection* connect(const sockaddr* addr, socklen_t len, SSL* ssl, core::EventLoop& loop,
                          core::BlockPool& pool, ClientOwner& owner);

}  // namespace citadel::http::http2
