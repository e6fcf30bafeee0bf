// The HTTP/2 server codec (RFC 9113) over libnghttp2: one downstream connection, many streams.
//
// Each request stream gets a StreamHandler from the same StreamFactory as HTTP/1.1 and goes
// through the same router, filters and handlers; the stream seam (http/stream.h) is all they
// see. nghttp2 does the framing, HPACK and the protocol's own checks (pseudo-header rules,
// connection-specific fields, Content-Length against DATA); this class maps streams onto the
// seam and adds what a server at the edge needs:
//
// - Flow control with bounded buffers: request DATA is acknowledged (WINDOW_UPDATE) only once
//   the handler took it, so a paused stream holds at most its window; a response body waits in
//   its stream's buffer (write_blocked() above the high watermark) and is handed to nghttp2 as
//   the client's windows allow; the connection stops pulling frames out of nghttp2 while the
//   socket's send buffer is full, and stops reading while the client does not read.
// - Defences, each with a limit in Http2Limits: concurrent streams (SETTINGS), the header list
//   size and field count (431 for the stream; far beyond them, an HPACK bomb, GOAWAY), rapid
//   reset, CONTINUATION floods, SETTINGS/PING/PRIORITY/WINDOW_UPDATE floods and empty frames
//   (GOAWAY with ENHANCE_YOUR_CALM), a client that never reads (nghttp2's queued-ACK bound).
// - A drain (reload, shutdown) sends a GOAWAY notice, then after a second the final GOAWAY with
//   the last stream taken, finishes those streams and closes: clients move without errors.
//
// Owned by its worker like an HTTP/1 connection (DownstreamConnection); worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/timer_wheel.h"
#include "http/downstream_connection.h"
#include "http/server_settings.h"
#include "http/stream.h"
#include "http/transport/socket_transport.h"
#include "http/transport/tls_transport.h"
#include "http/transport/transport.h"


struct nghttp2_session;

namespace citadel::http::http2 {

// The client connection preface (RFC 9113, 3.4): how h2c with prior knowledge starts.
inline constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

class NvList;
class Stream;

class ServerConnection : public DownstreamConnection,
                         public core::IoHandler,
                         public core::LoopTask {
 public:
  // Runs over `transport` (connected; registered or not), which must outlive the codec.
  // `initial`: bytes already read from the connection (a sniffed preface), processed first.
  ServerConnection(Transport& transport, const ConnectionInfo& info,
                   std::shared_ptr<const ServerSettings> settings, core::EventLoop& loop,
                   core::BlockPool& pool, StreamFactory& factory, ConnectionOwner& owner,
                   std::string_view initial = {});
  ~ServerConnection() override;

  // DownstreamConnection
  bool start() final;
  void close_when_idle() final;
  void abort() final { close("shutdown"); }

  void on_io(uint32_t events) final;
  void run_task() final;

  // Response bytes all streams may hold before their handlers are told to wait: four stream
  // watermarks (1 MiB by default), whatever the number of streams.
  size_t buffer_budget() const { return 4 * settings_->high_watermark; }

 private:
  friend class Stream;
  friend struct Callbacks;

  void do_read();
  // Pulls frames out of nghttp2 into out_ (while it is below the high watermark) and writes.
  void send();
  void flush();
  void close(std::string_view reason);
  // A protocol violation or a flood: GOAWAY with `code`, then close once it is written.
  void terminate(uint32_t code, std::string_view why);
  void arm_idle();
  static void on_idle_timer(void* self);
  static void on_goaway_timer(void* self);
  // The control-frame token bucket of Http2Limits; false when empty (nghttp2 keeps the
  // stream-reset one).
  bool take_control_token();
  void refill(uint64_t now_ms);
  void link(Stream* s);
  void unlink(Stream* s);
  // The response head as nghttp2 name/value pairs (lower-case names, no connection-specific
  // fields, Date added): in nv_, valid until the next call.
  void build_nv(const ResponseHead& head, bool informational);
  void build_trailer_nv(const std::vector<std::pair<std::string, std::string>>& fields);

  Transport& transport_;
  ConnectionInfo info_;
  std::shared_ptr<const ServerSettings> settings_;
  core::EventLoop& loop_;
  core::BlockPool& pool_;
  StreamFactory& factory_;
  ConnectionOwner& owner_;
  nghttp2_session* session_ = nullptr;
  core::Buffer in_;
  core::Buffer out_;
  std::string initial_;
  core::Timer idle_timer_;
  core::Timer goaway_timer_;
  Stream* head_ = nullptr;  // every live stream, for drains and closes
  size_t buffered_ = 0;     // response bytes in all streams' buffers
  size_t streams_ = 0;
  // Token buckets (Http2Limits) and the flood counters.
  double control_tokens_ = 0;
  uint64_t refilled_ms_ = 0;
  uint32_t empty_frames_ = 0;
  // The response head being submitted (nghttp2 copies it during the call).
  std::unique_ptr<NvList> nv_;  // reused for every head (http2/nv_list.h)
  bool closed_ = false;
  bool draining_ = false;
  bool terminating_ = false;
  bool in_callback_ = false;  // inside nghttp2 (mem_recv/mem_send): never send() from there
  bool read_paused_ = false;  // the client does not read: stop reading it
  bool read_pending_ = false;
  bool seen_stream_ = false;  // until the first request, the header timeout bounds the preface
};

using PlainServerConnection = WithTransport<ServerConnection, SocketTransport>;
using TlsServerConnection = WithTransport<ServerConnection, TlsTransport>;

}  // namespace citadel::http::http2
