#include "http/http1/server_connection.h"

#include <sys/epoll.h>

#include <cstring>

#include "http/http1/wire.h"

namespace citadel::http::http1 {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxPipelinedBytes = 64 * 1024;  // stop reading ahead of the current response
constexpr size_t kMaxHeadsPerTurn = 64;  // pipelined requests served per turn of the loop
constexpr uint64_t kLingerMs = 2000;

// Copies the head's bytes into the stream's arena so that the read buffer can move on.
void move_head_to_arena(RequestHead& h, const char* base, size_t len, core::Arena& arena) {
  const char* nb = move_fields_to_arena(h.headers, base, len, arena);
  h.method = rebase(h.method, base, len, nb);
  h.target = rebase(h.target, base, len, nb);
  h.path = rebase(h.path, base, len, nb);
  h.query = rebase(h.query, base, len, nb);
  h.authority = rebase(h.authority, base, len, nb);
}

void append_status_line(core::Buffer& b, int status, std::string_view reason) {
  b.append("HTTP/1.1 ");
  append_uint(b, static_cast<uint64_t>(status));
  b.append(" ");
  b.append(reason.empty() ? reason_phrase(status) : reason);
  b.append("\r\n");
}

}  // namespace

ServerConnection::ServerConnection(Transport& transport, const ConnectionInfo& info,
                                   std::shared_ptr<const ServerSettings> settings,
                                   core::EventLoop& loop,
                                   core::BlockPool& pool, StreamFactory& factory,
                                   ConnectionOwner& owner)
    : transport_(transport),
      info_(info),
      settings_(std::move(settings)),
      loop_(loop),
      factory_(factory),
      owner_(owner),
      in_(&pool),
      out_(&pool),
      idle_timer_(&ServerConnection::on_idle_timer, this),
      request_timer_(&ServerConnection::on_request_timer, this) {}

bool ServerConnection::start() {
  if (!transport_.register_with(loop_, *this).ok()) return false;
  arm_idle_timer(settings_->header_timeout_ms);
  if (!in_.empty()) {  // preloaded: parse it, and read on from the socket
    read_pending_ = true;
    loop_.schedule(this);
  }
  return true;
}

void ServerConnection::arm_idle_timer(uint64_t ms) {
  if (ms == 0) {
    loop_.timers().cancel(idle_timer_);
    return;
  }
  loop_.arm(idle_timer_, ms);
}

void ServerConnection::close_when_idle() {
  if (state_ == State::kClosed || state_ == State::kLingering) return;
  if (state_ == State::kIdle && stream_ == nullptr) {
    close("drain");
  } else {
    close_after_ = true;
  }
}

void ServerConnection::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  events = transport_.ready(events);
  if ((events & EPOLLERR) != 0) {
    close("socket error");
    return;
  }
  if ((events & EPOLLOUT) != 0 && !out_.empty()) flush();
  if (state_ == State::kClosed) return;
  if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) peer_closed_ = true;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) do_read();
}

void ServerConnection::do_read() {
  if (state_ == State::kLingering) {
    // Read and drop until the client's EOF (or the linger timer), so that a reset does not
    // destroy the response still in the client's receive buffer.
    char sink[4096];
    while (true) {
      size_t n = 0;
      ReadResult r = transport_.read_into(sink, sizeof sink, n);
      if (r == ReadResult::kMore || (r == ReadResult::kDrained && n > 0)) continue;
      if (r != ReadResult::kDrained) close("lingering close done");
      return;
    }
  }
  // Stop reading while the handler holds the body back, while enough of the next requests is
  // buffered (during a response, and between two: each request of a pipeline must not read
  // another chunk, or the input grows by a chunk per request), and while answered responses
  // wait for a client that does not read (a client that pipelines and never reads must not
  // grow the output).
  const bool ahead = (state_ == State::kAwaitResponse || state_ == State::kIdle) &&
                     in_.size() >= kMaxPipelinedBytes;
  if (read_paused_ || ahead ||
      (state_ == State::kIdle && out_.size() > settings_->high_watermark)) {
    read_pending_ = true;
    // Between two requests, what is buffered is the next request: go on with it.
    if (ahead && !read_paused_ && state_ == State::kIdle) process();
    return;
  }
  read_pending_ = false;
  if (!read_eof_) {
    // One read, then process: backpressure may pause us and a head may be complete; the loop
    // reads on (read_pending_) when the read filled the buffer.
    switch (transport_.read(in_, kReadChunk)) {
      case ReadResult::kDrained:
        // A short read does not mean the peer is still there: data and FIN can come in one
        // segment with one edge. Once the peer has closed, read on until the EOF.
        if (peer_closed_) read_pending_ = true;
        break;
      case ReadResult::kMore:
        read_pending_ = true;
        break;
      case ReadResult::kEof:
        read_eof_ = true;  // bytes that came with it are in in_, and are processed first
        break;
      case ReadResult::kError:
        close("read error");
        return;
    }
  }
  if (in_.empty() && !read_eof_ && state_ == State::kIdle) in_.release();
  process();
}

void ServerConnection::process() {
  if (in_process_) {
    need_process_ = true;
    return;
  }
  in_process_ = true;
  bool progress = true;
  size_t heads = 0;  // requests started in this call
  bool yield = false;
  while (progress && state_ != State::kClosed && state_ != State::kLingering) {
    progress = false;
    need_process_ = false;
    switch (state_) {
      case State::kIdle:
      case State::kHead:
        if (in_.empty()) {
          if (read_eof_ && state_ == State::kIdle && !out_.empty()) {
            close_after_ = true;  // half-closed after pipelining: finish writing, then close
          } else if (read_eof_) {
            close(state_ == State::kHead ? "eof in head" : "client closed");
          }
          break;
        }
        if (state_ == State::kIdle && out_.size() > settings_->high_watermark) {
          output_blocked_ = true;  // flush() resumes once the client has read enough
          break;
        }
        if (state_ == State::kIdle && heads >= kMaxHeadsPerTurn) {
          // A client pipelining many requests that are answered at once (a fixed response)
          // gets a turn of this many, then the loop serves the other connections: the next
          // turn comes from the idle timer at 0 ms, once per loop iteration (a task would run
          // again after every other connection's event, and all such connections together
          // would still keep the loop from epoll).
          turn_pending_ = true;
          arm_idle_timer(1);  // 1 ms: the wheel's resolution; 0 means "off" here
          yield = true;
          break;
        }
        progress = parse_head();
        if (state_ != State::kIdle && state_ != State::kHead) ++heads;
        break;
      case State::kBody:
        progress = deliver_body();
        break;
      case State::kAwaitResponse:
        if (resp_done_) {
          finish_request();
          progress = true;
        } else if (read_eof_ && upgrade_requested_) {
          // The client left before the upgrade answer.
          close("client closed during upgrade");
        }
        break;
      case State::kTunnel:
        if (!in_.empty() && !read_paused_) {
          std::string_view v = in_.view();
          size_t n = v.size();
          stream_->on_request_data(v, false);
          if (state_ == State::kTunnel) in_.consume(n);
          progress = true;
        } else if (in_.empty() && read_eof_ && stream_ != nullptr && !tunnel_eof_sent_) {
          tunnel_eof_sent_ = true;  // report the client's half-close once
          stream_->on_request_data({}, true);
          progress = true;
        }
        break;
      default:
        break;
    }
    if (yield) break;
    if (need_process_) progress = true;
  }
  in_process_ = false;
  if (read_pending_ && !read_paused_ && state_ != State::kClosed) loop_.schedule(this);
}

bool ServerConnection::parse_head() {
  if (stream_ == nullptr) {
    stream_ = factory_.new_stream(*this);
    resp_started_ = resp_done_ = chunked_out_ = false;
    is_head_ = upgrade_requested_ = false;
    line_checked_ = false;
    head_scanned_ = 0;
    if (state_ == State::kIdle) arm_idle_timer(settings_->header_timeout_ms);
    state_ = State::kHead;
  }
  std::string_view data = in_.view();
  // Re-parse only when the head could be complete or a limit could be crossed: a slow client
  // sending one byte at a time must not make this quadratic.
  bool first = head_scanned_ == 0;
  size_t end = find_head_end(data, head_scanned_);
  // The request line is parsed (and refused if it cannot become HTTP/1.x) as soon as its end
  // arrives, not only once the whole head is in.
  bool line_now = !line_checked_ && std::memchr(data.data() + head_scanned_, '\n',
                                                data.size() - head_scanned_) != nullptr;
  if (end == std::string_view::npos && !first && !line_now &&
      data.size() <= settings_->limits.max_request_line) {
    head_scanned_ = data.size();
    if (read_eof_) close("eof in head");
    return false;
  }
  line_checked_ = line_checked_ || line_now;
  head_scanned_ = data.size();
  RequestHead& head = stream_->request_head();
  head.headers.clear();
  ParseOutcome r = parse_request(data, settings_->limits, head);
  if (r.kind == ParseOutcome::kIncomplete) {
    if (read_eof_) close("eof in head");
    return false;
  }
  if (r.kind == ParseOutcome::kError) {
    owner_.on_protocol_error(&info_, r.status, r.reason);
    send_local_error(r.status, r.reason);
    return false;
  }
  move_head_to_arena(head, data.data(), r.consumed, stream_->arena());
  in_.consume(r.consumed);
  head.scheme = info_.tls ? "https" : "http";
  keep_alive_ = head.keep_alive;
  is_head_ = head.is_head;
  request_http10_ = head.version_minor == 0;
  upgrade_requested_ = head.upgrade;
  bool has_body = head.framing != BodyFraming::kNone;
  body_remaining_ = head.content_length;
  // The body is read as the client framed it, whatever filters later make of head.framing for
  // the target (a filter that changes the body's size turns it chunked).
  request_chunked_ = head.framing == BodyFraming::kChunked;
  if (request_chunked_) chunked_.reset();
  if (settings_->request_timeout_ms != 0) loop_.arm(request_timer_, settings_->request_timeout_ms);
  if (has_body) {
    state_ = State::kBody;
    arm_idle_timer(settings_->body_idle_timeout_ms);
  } else {
    state_ = State::kAwaitResponse;
    arm_idle_timer(0);
  }
  StreamHandler* s = stream_;
  s->on_request_headers(!has_body && !upgrade_requested_);
  // The handler may have refused the protocol switch (cleared head.upgrade): then this is a
  // plain request, and no tunnel follows its response. `stream_` is still `s` here (a response
  // sent inside the call finishes the request only after process() returns to its loop).
  if (stream_ == s) upgrade_requested_ = head.upgrade;
  if (has_body && head.expect_continue && !resp_started_ && state_ == State::kBody) {
    out_.append("HTTP/1.1 100 Continue\r\n\r\n");
    loop_.schedule(this);
  }
  return true;
}

bool ServerConnection::deliver_body() {
  if (read_paused_) return false;
  if (in_.empty()) {
    if (read_eof_) {
      release_stream("client closed during request body");
      close("eof in body");
    }
    return false;
  }
  arm_idle_timer(settings_->body_idle_timeout_ms);
  std::string_view v = in_.view();
  if (!request_chunked_) {
    size_t n = v.size() < body_remaining_ ? v.size() : static_cast<size_t>(body_remaining_);
    body_remaining_ -= n;
    bool end = body_remaining_ == 0;
    if (end) {
      state_ = State::kAwaitResponse;
      arm_idle_timer(0);
    }
    stream_->on_request_data(v.substr(0, n), end);
    if (state_ != State::kClosed) in_.consume(n);
    return true;
  }
  // Chunked: hand over each piece of data as it is decoded.
  std::string_view rest = v;
  std::string_view piece;
  while (state_ == State::kBody && !read_paused_) {
    ChunkedDecoder::Result res = chunked_.decode(rest, piece);
    if (res == ChunkedDecoder::Result::kData) {
      stream_->on_request_data(piece, false);
      continue;
    }
    if (res == ChunkedDecoder::Result::kDone) {
      state_ = State::kAwaitResponse;
      arm_idle_timer(0);
      if (chunked_.has_trailers()) {
        HeaderMap trailers;
        chunked_.trailers(trailers);
        stream_->on_request_trailers(trailers);
      } else {
        stream_->on_request_data({}, true);
      }
      break;
    }
    if (res == ChunkedDecoder::Result::kError) {
      // The stream logs this request (with the 400 when the client gets it), not the owner.
      owner_.on_protocol_error(nullptr, 400, chunked_.error());
      if (!resp_started_) {
        send_local_error(400, chunked_.error());
      } else {
        release_stream("invalid chunked body");
        close("invalid chunked body");
      }
      return false;
    }
    break;  // kNeedMore
  }
  if (state_ != State::kClosed) in_.consume(v.size() - rest.size());
  return true;
}

void ServerConnection::resume_request_body() {
  if (!read_paused_) return;
  read_paused_ = false;
  // Data may already be buffered or waiting in the socket, and no new edge will announce it.
  need_process_ = true;
  loop_.schedule(this);
}

void ServerConnection::run_task() {
  if (state_ == State::kClosed) return;
  // The end of a tunnel with nothing left to write closes the connection from flush() too;
  // otherwise a client whose upstream closed would wait forever.
  if (!out_.empty() || (state_ == State::kTunnel && resp_done_)) flush();
  if (state_ == State::kClosed) return;
  if (read_pending_ && !read_paused_) {
    do_read();
    return;
  }
  if (need_process_) process();
}

void ServerConnection::send_informational(const ResponseHead& head) {
  if (request_http10_ || resp_started_) return;  // HTTP/1.0 clients get no 1xx
  append_status_line(out_, head.status, head.reason);
  append_fields(out_, head.headers);
  out_.append("\r\n");
  loop_.schedule(this);
}

void ServerConnection::send_headers(ResponseHead& head, bool end_stream) {
  if (state_ == State::kClosed || resp_started_) return;
  resp_started_ = true;
  const bool upgrade = head.status == 101;
  const bool no_body = is_head_ || head.status == 204 || head.status == 304 ||
                       (head.status >= 100 && head.status < 200);
  if (owner_.draining()) close_after_ = true;
  if (upgrade_requested_ && !upgrade) close_after_ = true;  // the request never really ended
  append_status_line(out_, head.status, head.reason);
  append_fields(out_, head.headers);
  append_date(head.headers);
  chunked_out_ = false;
  if (upgrade) {
    out_.append("Connection: upgrade\r\n\r\n");
    state_ = State::kTunnel;
    arm_idle_timer(0);
    loop_.timers().cancel(request_timer_);
    need_process_ = true;  // buffered client bytes are tunnel data now
    loop_.schedule(this);
    return;
  }
  if (head.framing == BodyFraming::kContentLength ||
      (no_body && head.content_length > 0 && head.status != 204 && head.status >= 200)) {
    out_.append("Content-Length: ");
    append_uint(out_, head.content_length);
    out_.append("\r\n");
  } else if (head.framing == BodyFraming::kNone) {
    if (!no_body) out_.append("Content-Length: 0\r\n");
  } else if (!no_body) {
    if (request_http10_) {
      close_after_ = true;  // close-delimited for HTTP/1.0 clients
    } else {
      out_.append("Transfer-Encoding: chunked\r\n");
      chunked_out_ = true;
    }
  }
  const bool closing = close_after_ || !keep_alive_;
  if (closing) {
    out_.append("Connection: close\r\n\r\n");
  } else if (request_http10_) {
    out_.append("Connection: keep-alive\r\n\r\n");
  } else {
    out_.append("\r\n");
  }
  if (no_body) chunked_out_ = false;
  loop_.schedule(this);
  if (end_stream) send_body({}, true, nullptr);
}

void ServerConnection::send_body(std::string_view data, bool end_stream,
                                 const HeaderMap* trailers) {
  if (state_ == State::kClosed || !resp_started_ || resp_done_) return;
  if (state_ == State::kTunnel) {
    out_.append(data);
    if (end_stream) {
      // The upstream closed its side: finish writing, then close.
      resp_done_ = true;
      close_after_ = true;
      keep_alive_ = false;
    }
    loop_.schedule(this);
    return;
  }
  if (!is_head_) append_body(out_, data, chunked_out_, end_stream, trailers);
  loop_.schedule(this);
  if (!end_stream) return;
  resp_done_ = true;
  if (state_ == State::kAwaitResponse) {
    if (in_process_) need_process_ = true;
    else finish_request();
  } else if (state_ == State::kBody) {
    // Answered before the request body was read (an early error, or an upstream that did not
    // wait): the rest of the body cannot be trusted to be skipped, so close after writing.
    close_after_ = true;
    finish_request();
  }
}

void ServerConnection::finish_request() {
  StreamHandler* s = stream_;
  stream_ = nullptr;
  loop_.timers().cancel(request_timer_);
  if (s != nullptr) s->on_complete();
  resp_started_ = resp_done_ = false;
  if (close_after_ || !keep_alive_ || owner_.draining()) {
    state_ = State::kAwaitResponse;  // nothing more is read
    read_paused_ = true;
    if (out_.empty()) start_lingering_close();
    else loop_.schedule(this);
    close_after_ = true;
    return;
  }
  state_ = State::kIdle;
  head_scanned_ = 0;
  arm_idle_timer(settings_->keepalive_timeout_ms);
  if (in_.empty()) in_.release();
  need_process_ = true;
  if (!in_process_) loop_.schedule(this);
}

void ServerConnection::flush() {
  // The handler saw write_blocked() when the buffer crossed the mark; remember that before
  // writing, or a flush that drains everything at once would never wake it up.
  if (out_.size() > settings_->high_watermark) was_blocked_ = true;
  while (!out_.empty()) {
    long n = transport_.write(out_.data(), out_.size());
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;  // the rest goes on the next EPOLLOUT
    release_stream("downstream write failed");
    close("write error");
    return;
  }
  if (out_.empty()) {
    if (state_ == State::kIdle) out_.release();
    if (close_after_ && stream_ == nullptr && state_ != State::kTunnel) {
      start_lingering_close();
      return;
    }
    if (close_after_ && state_ == State::kTunnel && resp_done_) {
      release_stream("tunnel closed");
      close("tunnel closed");
      return;
    }
  }
  if (output_blocked_ && out_.size() <= settings_->low_watermark) {
    output_blocked_ = false;
    read_pending_ = true;  // reads were skipped while blocked, and no edge will announce them
    need_process_ = true;
    loop_.schedule(this);
  }
  if (out_.size() <= settings_->low_watermark && stream_ != nullptr && was_blocked_) {
    was_blocked_ = false;
    stream_->on_write_ready();
  } else if (out_.size() > settings_->high_watermark) {
    was_blocked_ = true;
  }
}

void ServerConnection::append_date(const HeaderMap& headers) {
  // RFC 9110 6.6.1: an origin with a clock sends Date, and a recipient with a clock adds one to
  // a response it forwards without it. Local answers (respond, redirect, errors) get it here.
  if (headers.find("date") != nullptr) return;
  out_.append("Date: ");
  out_.append(owner_.http_date());
  out_.append("\r\n");
}

void ServerConnection::send_local_error(int status, std::string_view reason) {
  release_stream(reason, status);
  close_after_ = true;
  keep_alive_ = false;
  append_status_line(out_, status, {});
  append_date(HeaderMap());
  out_.append("Content-Type: text/plain\r\nConnection: close\r\nContent-Length: ");
  append_uint(out_, reason.size() + 1);
  out_.append("\r\n\r\n");
  out_.append(reason);
  out_.append("\n");
  state_ = State::kAwaitResponse;
  read_paused_ = true;
  flush();
}

void ServerConnection::start_lingering_close() {
  if (state_ == State::kClosed || state_ == State::kLingering) return;
  transport_.shutdown_write();
  if (read_eof_) {
    close("closed after response");
    return;
  }
  state_ = State::kLingering;
  in_.release();
  loop_.arm(idle_timer_, kLingerMs);
  do_read();
}

void ServerConnection::release_stream(std::string_view reset_reason, int answered) {
  if (stream_ == nullptr) return;
  StreamHandler* s = stream_;
  stream_ = nullptr;
  s->on_reset(reset_reason, answered);
  s->on_complete();
}

void ServerConnection::reset() {
  // Called by the handler: it expects no more callbacks, but on_complete() still follows.
  if (stream_ != nullptr) {
    StreamHandler* s = stream_;
    stream_ = nullptr;
    s->on_complete();
  }
  if (state_ == State::kClosed) return;
  if (!resp_started_ || resp_done_ || out_.empty() || state_ == State::kTunnel) {
    close("reset by handler");
    return;
  }
  // A response cut short (its upstream failed mid-body): what it already has goes out, then
  // the connection closes without the body's end (no last chunk, or fewer bytes than its
  // Content-Length), so the client sees the truncation; the client gets a send timeout.
  close_after_ = true;
  keep_alive_ = false;
  state_ = State::kAwaitResponse;
  read_paused_ = true;
  arm_idle_timer(settings_->body_idle_timeout_ms);
  loop_.schedule(this);
}

void ServerConnection::close(std::string_view reason) {
  if (state_ == State::kClosed) return;
  release_stream(reason);
  state_ = State::kClosed;
  loop_.timers().cancel(idle_timer_);
  loop_.timers().cancel(request_timer_);
  transport_.close(loop_);
  in_.release();
  out_.release();
  owner_.on_connection_closed(*this);  // hands us to defer_delete
}

void ServerConnection::on_idle_timer(void* arg) {
  auto* c = static_cast<ServerConnection*>(arg);
  switch (c->state_) {
    case State::kHead:
      // Part of a head came and the rest did not (slowloris): logged and counted like a
      // malformed head, since no stream got it.
      c->owner_.on_protocol_error(&c->info_, 408, "request head timeout");
      c->send_local_error(408, "request head timeout");
      break;
    case State::kBody:
      if (!c->resp_started_) {
        c->send_local_error(408, "request body timeout");
      } else {
        c->close("request body timeout");
      }
      break;
    case State::kIdle:
      if (c->turn_pending_) {
        // Not idle: a long pipeline's next turn (see process()).
        c->turn_pending_ = false;
        c->arm_idle_timer(c->settings_->keepalive_timeout_ms);
        c->need_process_ = true;
        c->run_task();
        break;
      }
      c->close("idle timeout");
      break;
    case State::kLingering:
    default:
      c->close("idle timeout");
      break;
  }
}

void ServerConnection::on_request_timer(void* arg) {
  auto* c = static_cast<ServerConnection*>(arg);
  if (c->state_ == State::kClosed || c->stream_ == nullptr) return;
  if (!c->resp_started_) {
    bool waiting_upstream = c->state_ == State::kAwaitResponse;
    c->send_local_error(waiting_upstream ? 504 : 408, "request timeout");
  } else {
    c->close("request timeout");
  }
}

}  // namespace citadel::http::http1
