// The HTTP/1.1 server codec: one downstream connection, one request at a time.
//
// Owned by its worker (created on accept, destroyed through EventLoop::defer_delete after
// close); every method runs on that worker's thread. Pipelined requests are parsed only after
// the previous response is complete, so responses leave in order. Request and response bodies
// are streamed in pieces with backpressure both ways: the codec stops reading while the handler
// has paused the request body, and reports write_blocked() while its send buffer is above the
// high watermark. It reads and writes through a Transport (http/transport/) and owns no
// descriptor: PlainServerConnection is the codec and a plain socket in one object, and TLS will
// be another transport under the same codec.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/http1/chunked.h"
#include "http/downstream_connection.h"
#include "http/http1/parser.h"
#include "http/server_settings.h"
#include "http/stream.h"
#include "http/transport/socket_transport.h"
#include "http/transport/transport.h"

namespace citadel::http::http1 {

// The listener's settings, shared by the HTTP/1.1 and HTTP/2 codecs (http/server_settings.h).
using ServerSettings = http::ServerSettings;

// The codec over any transport. Its overrides are final, so its own calls stay direct; the
// only derived classes are WithTransport<ServerConnection, T>, which add the transport's storage.
class ServerConnection : public DownstreamConnection,
                         public core::IoHandler,
                         public core::LoopTask,
                         public ServerStream {
 public:
  // Runs over `transport` (connected, not yet registered), which must outlive the codec (see
  // WithTransport). `settings` must outlive the connection (the listener keeps them alive
  // through a shared_ptr the worker holds).
  ServerConnection(Transport& transport, const ConnectionInfo& info,
                   std::shared_ptr<const ServerSettings> settings,
                   core::EventLoop& loop, core::BlockPool& pool, StreamFactory& factory,
                   ConnectionOwner& owner);
  ~ServerConnection() override = default;

  // Bytes already read from the connection (a sniffer looked at them to choose this codec),
  // parsed first. Before start().
  void preload(std::string_view bytes) { in_.append(bytes); }

  // DownstreamConnection
  bool start() final;
  void close_when_idle() final;
  void abort() final { close("shutdown"); }

  // core::IoHandler
  void on_io(uint32_t events) final;
  // core::LoopTask: flush writes, continue pipelined input.
  void run_task() final;

  // ServerStream
  void send_informational(const ResponseHead& head) final;
  void send_headers(ResponseHead& head, bool end_stream) final;
  void send_data(std::string_view data, bool end_stream) final {
    send_body(data, end_stream, nullptr);
  }
  void send_trailers(const HeaderMap& trailers) final { send_body({}, true, &trailers); }
  bool write_blocked() const final { return out_.size() > settings_->high_watermark; }
  void pause_request_body() final { read_paused_ = true; }
  void resume_request_body() final;
  void reset() final;
  void close_after_response() final { close_after_ = true; }
  const ConnectionInfo& connection() const final { return info_; }

 private:
  void send_body(std::string_view data, bool end_stream, const HeaderMap* trailers);
  enum class State : uint8_t {
    kIdle,        // waiting for the first byte of a request
    kHead,        // part of a request head received
    kBody,        // delivering the request body
    kAwaitResponse,  // request complete, response in progress
    kTunnel,      // after 101: raw bytes both ways
    kLingering,   // response sent, write side shut, draining input before close
    kClosed,
  };

  void do_read();
  void process();
  bool parse_head();
  bool deliver_body();
  void finish_request();
  void flush();
  void send_local_error(int status, std::string_view reason);
  void append_date(const HeaderMap& headers);
  void close(std::string_view reason);
  void start_lingering_close();
  // Resets the stream (see StreamHandler::on_reset for `answered`).
  void release_stream(std::string_view reset_reason, int answered = 0);
  void arm_idle_timer(uint64_t ms);
  static void on_idle_timer(void* self);
  static void on_request_timer(void* self);

  Transport& transport_;
  ConnectionInfo info_;
  // Shared with the listener; a reload gives the listener new settings, this connection keeps
  // the ones it was accepted with.
  std::shared_ptr<const ServerSettings> settings_;
  core::EventLoop& loop_;
  StreamFactory& factory_;
  ConnectionOwner& owner_;
  core::Buffer in_;
  core::Buffer out_;
  core::Timer idle_timer_;
  core::Timer request_timer_;
  StreamHandler* stream_ = nullptr;
  ChunkedDecoder chunked_;
  uint64_t body_remaining_ = 0;
  size_t head_scanned_ = 0;

  // One bit each: an idle keep-alive connection is this object and nothing else, and its size
  // is what an idle client costs (the benchmarks compare it with nginx's).
  State state_ = State::kIdle;
  bool read_paused_ : 1 = false;   // the handler paused the request body
  bool read_pending_ : 1 = false;  // input may be waiting in the socket while paused
  bool read_eof_ : 1 = false;
  bool in_process_ : 1 = false;
  bool need_process_ : 1 = false;
  bool was_blocked_ : 1 = false;
  bool close_after_ : 1 = false;  // close once this response is written
  bool keep_alive_ : 1 = true;
  bool is_head_ : 1 = false;
  bool upgrade_requested_ : 1 = false;
  bool resp_started_ : 1 = false;
  bool resp_done_ : 1 = false;
  bool chunked_out_ : 1 = false;
  bool request_http10_ : 1 = false;
  bool tunnel_eof_sent_ : 1 = false;
  bool turn_pending_ : 1 = false;  // the idle timer brings a long pipeline's next turn
  bool request_chunked_ : 1 = false;  // the request body comes chunked (else Content-Length)
  bool line_checked_ : 1 = false;    // the request line of the head being read has been parsed
  bool output_blocked_ : 1 = false;  // the next request waits until the output drains (pipelining)
  bool peer_closed_ : 1 = false;     // EPOLLRDHUP seen: read until EOF, a short read is not the end
};

// The HTTP/1.1 codec over a plain socket, in one allocation.
using PlainServerConnection = WithTransport<ServerConnection, SocketTransport>;

}  // namespace citadel::http::http1
