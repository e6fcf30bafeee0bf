// The HTTP/1.1 server codec: one downstream connection, one request at a time.
//
// Owned by its worker (created on accept, destroyed through EventLoop::defer_delete after
// close); every method runs on that worker's thread. Pipelined requests are parsed only after
// the previous response is complete, so responses leave in order. Request and response bodies
// are streamed in pieces with backpressure both ways: the codec stops reading the socket while
// the handler has paused the request body, and reports write_blocked() while its send buffer is
// above the high watermark.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/http1/chunked.h"
#include "http/http1/parser.h"
#include "http/stream.h"

namespace citadel::http::http1 {

struct ServerSettings {
  ParseLimits limits;
  uint64_t header_timeout_ms = 10'000;
  uint64_t body_idle_timeout_ms = 30'000;
  uint64_t keepalive_timeout_ms = 60'000;
  uint64_t request_timeout_ms = 0;  // 0: none
  size_t high_watermark = 256 * 1024;
  size_t low_watermark = 64 * 1024;
};

class ServerConnection;

// The worker side of a connection's life.
class ConnectionOwner {
 public:
  virtual void on_connection_closed(ServerConnection& conn) = 0;
  // True while the worker drains: responses carry Connection: close, idle connections close.
  virtual bool draining() const = 0;
  // A request was refused as malformed or over a limit (answered with `status`).
  virtual void on_protocol_error(int status) { (void)status; }
  // The current HTTP date, for the Date field of every response that lacks one (the owner
  // formats it once per second for all its connections).
  virtual std::string_view http_date() = 0;

 protected:
  ~ConnectionOwner() = default;
};

// Deferred comes first so that deleting through it needs no pointer adjustment.
class ServerConnection final : public core::Deferred,
                               public core::IoHandler,
                               public core::LoopTask,
                               public ServerStream {
 public:
  // Takes ownership of the connected, non-blocking socket `fd`. `settings` must outlive the
  // connection (the listener keeps them alive through a shared_ptr the worker holds).
  ServerConnection(int fd, const ConnectionInfo& info,
                   std::shared_ptr<const ServerSettings> settings,
                   core::EventLoop& loop, core::BlockPool& pool, StreamFactory& factory,
                   ConnectionOwner& owner);
  ~ServerConnection() override;

  // Registers with the loop and starts reading.
  bool start();
  // Closes an idle connection now, or asks a busy one to close after its response (drain).
  void close_when_idle();
  // Closes now, resetting any request in flight (shutdown after a drain timeout).
  void abort() { close("shutdown"); }

  // core::IoHandler
  void on_io(uint32_t events) override;
  // core::LoopTask: flush writes, continue pipelined input.
  void run_task() override;

  // ServerStream
  void send_informational(const ResponseHead& head) override;
  void send_headers(ResponseHead& head, bool end_stream) override;
  void send_data(std::string_view data, bool end_stream) override {
    send_body(data, end_stream, nullptr);
  }
  void send_trailers(const HeaderMap& trailers) override { send_body({}, true, &trailers); }
  bool write_blocked() const override { return out_.size() > settings_->high_watermark; }
  void pause_request_body() override { read_paused_ = true; }
  void resume_request_body() override;
  void reset() override;
  void close_after_response() override { close_after_ = true; }
  const ConnectionInfo& connection() const override { return info_; }

  // Intrusive list links for the worker's connection list, and the owner's tag for it (the
  // worker: the listener that accepted the connection).
  ServerConnection* prev = nullptr;
  ServerConnection* next = nullptr;
  void* owner_tag = nullptr;

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
  void release_stream(std::string_view reset_reason);
  void arm_idle_timer(uint64_t ms);
  static void on_idle_timer(void* self);
  static void on_request_timer(void* self);

  int fd_;
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
  uint64_t requests_ = 0;

  State state_ = State::kIdle;
  bool read_paused_ = false;    // the handler paused the request body
  bool read_pending_ = false;   // input may be waiting in the socket while paused
  bool read_eof_ = false;
  bool in_process_ = false;
  bool need_process_ = false;
  bool was_blocked_ = false;
  bool close_after_ = false;    // close once this response is written
  bool keep_alive_ = true;
  bool is_head_ = false;
  bool upgrade_requested_ = false;
  bool resp_started_ = false;
  bool resp_done_ = false;
  bool chunked_out_ = false;
  bool request_http10_ = false;
  bool tunnel_eof_sent_ = false;
  bool line_checked_ = false;   // the request line of the head being read has been parsed
  bool output_blocked_ = false; // the next request waits until the output drains (pipelining)
  bool peer_closed_ = false;    // EPOLLRDHUP seen: read until EOF, a short read is not the end
};

}  // namespace citadel::http::http1
