// TLS under the codecs (OpenSSL 3): the Transport of a TLS connection, and the downstream
// connection that runs a server handshake before the codec is chosen.
//
// A TLS listener's worker accepts a socket and hands it to a TlsHandshake, which drives the
// handshake (bounded by the listener's header timeout) and then gives its transport to its
// owner: the owner picks the codec by the ALPN result and builds it over the transport, in the
// handshake's place. From then on the codec reads and writes plaintext through TlsTransport
// exactly as through a socket (transport.h explains how readiness is translated).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/event_loop.h"
#include "core/timer_wheel.h"
#include "http/downstream_connection.h"
#include "http/stream.h"
#include "http/transport/tls_context.h"
#include "http/transport/transport.h"

namespace citadel::http {

class TlsTransport final : public Transport {
 public:
  // Takes `fd` (connected, non-blocking) and `ssl` (from a context); owns both. A server side
  // waits for handshake() to be driven to the end by its TlsHandshake before a codec uses it; a
  // client side runs its handshake from ready() once the TCP connect completes, with `sni`
  // (may be empty) as the server name.
  static TlsTransport server(int fd, SSL* ssl);
  static TlsTransport client(int fd, SSL* ssl);

  TlsTransport(TlsTransport&& other) noexcept;
  TlsTransport& operator=(TlsTransport&&) = delete;
  ~TlsTransport() override;

  enum class Handshake { kDone, kWaiting, kFailed };
  // Drives the server handshake on: kWaiting until the peer's next bytes (or room to write).
  Handshake handshake();
  // Why the handshake or the connection failed (for logs), once it did.
  const std::string& error() const;
  // What the handshake learned (valid after kDone; the pointer is stable across moves).
  const TlsInfo* info() const;
  int fd() const;

  core::Status register_with(core::EventLoop& loop, core::IoHandler& handler) override;
  uint32_t ready(uint32_t events) override;
  ReadResult read_into(char* dst, size_t room, size_t& n) override;
  long write(const char* data, size_t len) override;
  long writev(std::string_view a, std::string_view b) override;
  void shutdown_write() override;
  void close(core::EventLoop& loop) override;
  int connect_error() override;
  std::string_view failure_detail() const override;

 private:
  struct State;
  explicit TlsTransport(std::unique_ptr<State> state);
  void fail_protocol(const char* what);
  std::unique_ptr<State> s_;
};

// The owner's side of a server handshake.
class TlsHandshakeOwner {
 public:
  // The handshake is done: build the codec over h.take_transport() in h's place (list links,
  // accounting), start it, and defer_delete h. Called from h's own I/O callback: h must not be
  // destroyed before it returns (defer_delete is fine).
  virtual void on_handshake_done(class TlsHandshake& h) = 0;
  // The handshake failed or timed out (`why`: OpenSSL's reason, "handshake timeout"); the
  // connection closes right after, through ConnectionOwner::on_connection_closed.
  virtual void on_handshake_failed(std::string_view why) { (void)why; }

 protected:
  ~TlsHandshakeOwner() = default;
};

class TlsHandshake final : public DownstreamConnection, public core::IoHandler {
 public:
  // `info` is the accepted client's; its tls flag and tls_info are filled here.
  TlsHandshake(TlsTransport transport, const ConnectionInfo& info, core::EventLoop& loop,
               ConnectionOwner& owner, TlsHandshakeOwner& done, uint64_t timeout_ms);
  ~TlsHandshake() override;

  bool start() override;
  // A connection still in its handshake has no request: a drain closes it at once.
  void close_when_idle() override { abort(); }
  void abort() override;
  void on_io(uint32_t events) override;

  // For TlsHandshakeOwner::on_handshake_done only: the transport (still registered for the
  // handshake: the codec's start() rebinds it) and the connection's info with TLS filled in.
  TlsTransport take_transport();
  const ConnectionInfo& info() const { return info_; }

 private:
  static void on_timeout(void* self);
  void close(std::string_view why);

  TlsTransport transport_;
  ConnectionInfo info_;
  core::EventLoop& loop_;
  ConnectionOwner& owner_;
  TlsHandshakeOwner& done_;
  uint64_t timeout_ms_;
  core::Timer timer_;
  bool closed_ = false;
  bool taken_ = false;
};

}  // namespace citadel::http
