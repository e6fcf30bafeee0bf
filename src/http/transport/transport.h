// The byte stream under a codec: a plain socket (socket_transport.h) or TLS (tls_transport.h).
//
// The HTTP/1 codecs (and the HTTP/2 one to come) read, write, half-close and close through a
// Transport and own no file descriptor, so that TLS slides in under them without changing them
// again. One transport serves one connection and is used on its worker's thread only.
//
// Readiness: the codec registers the transport once (register_with), edge-triggered for both
// directions, and passes every readiness report through ready() before acting on it. A plain
// socket returns the events unchanged. A TLS transport translates them: a read that needed the
// socket writable (SSL_ERROR_WANT_WRITE: a key update, a renegotiation) made read() return
// kDrained, so ready() turns the next EPOLLOUT into EPOLLIN; a write that needed it readable
// returned 0 from write(), so ready() turns the next EPOLLIN into EPOLLOUT; while a client-side
// handshake runs, ready() drives it and returns 0 until it is done. Epoll registration never
// changes (no epoll_ctl per request), and a codec never learns why a read or write waited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/status.h"

namespace citadel::http {

// What one read brought. Edge-triggered reading relies on the difference between kDrained and
// kMore: after kDrained the next readiness edge announces more input; after kMore nothing will,
// so the codec must read again on its own (from the loop, after processing what it has).
enum class ReadResult {
  kDrained,  // less than the room offered (possibly nothing): the next edge announces more
  kMore,     // the room filled, and more may be waiting (a TLS record decoded but not delivered)
  kEof,      // the peer ended its side; bytes may come with it (the last ones) and are valid
  kError,    // the connection is broken; errno says why (a TLS transport sets EPROTO or EIO)
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Registers the connection's descriptor with `loop` for `handler` (edge-triggered, both
  // directions and EPOLLRDHUP), or moves a registration to `handler`: a codec chosen after a
  // TLS handshake (ALPN) takes the transport over from the handshake this way.
  virtual core::Status register_with(core::EventLoop& loop, core::IoHandler& handler) = 0;
  // The readiness the codec should act on, for readiness `events` reported by the loop (see the
  // top of this file). 0: nothing for the codec.
  virtual uint32_t ready(uint32_t events) = 0;

  // Reads at most `room` bytes of application data into `dst` and sets `n` to their count.
  virtual ReadResult read_into(char* dst, size_t room, size_t& n) = 0;
  // One read into `in`, offering at least `chunk` bytes of room.
  ReadResult read(core::Buffer& in, size_t chunk) {
    char* w = in.prepare(chunk);
    size_t n = 0;
    ReadResult r = read_into(w, in.writable(), n);
    in.commit(n);
    return r;
  }

  // Takes bytes from `data` (len > 0). Returns how many (> 0), 0 when it can take none now (an
  // EPOLLOUT through ready() says when to try again), or -1 when the connection is broken (errno
  // set). Bytes not taken must be offered again, unchanged, at the front of the next call (what
  // TLS asks of SSL_write): a codec keeps them at the head of its send buffer.
  virtual long write(const char* data, size_t len) = 0;
  // write() of `a` followed by `b` in one call (a response head and its body without a copy);
  // the count covers both, `a` first. `a` must not be empty.
  virtual long writev(std::string_view a, std::string_view b) = 0;
  // Ends the write side once everything taken is sent (TCP FIN; TLS sends close_notify first).
  virtual void shutdown_write() = 0;
  // Unregisters from `loop` (if registered) and closes. Idempotent; the destructor closes too.
  virtual void close(core::EventLoop& loop) = 0;

  // For a client connection in progress: 0 once it is established, else its error (an errno
  // value). Asked when ready() first reports EPOLLOUT or an error; a TLS transport reports the
  // connection ready only after its handshake.
  virtual int connect_error() = 0;
  // Why the connection failed, in words, where the transport knows more than errno says (a TLS
  // transport: "certificate verify failed", ...); empty otherwise.
  virtual std::string_view failure_detail() const { return {}; }
};

// A codec and the transport under it as one object: one allocation per connection, and no
// pointer chase beyond the codec's reference. The transport is built first and destroyed last,
// so the codec may use it from its constructor to its destructor. `Codec` takes a Transport&
// first, then `args`.
template <class T>
struct TransportSlot {
  explicit TransportSlot(T&& t) : transport(std::move(t)) {}
  T transport;
};

template <class Codec, class T>
class WithTransport final : private TransportSlot<T>, public Codec {
 public:
  template <class... Args>
  explicit WithTransport(T transport, Args&&... args)
      : TransportSlot<T>(std::move(transport)),
        Codec(TransportSlot<T>::transport, std::forward<Args>(args)...) {}
};

}  // namespace citadel::http
