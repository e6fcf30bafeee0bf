#include "http/http1/client_connection.h"

#include <openssl/ssl.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "http/http1/wire.h"
#include "http/transport/tls_transport.h"

namespace citadel::http::http1 {
namespace {

constexpr size_t kReadChunk = 16 * 1024;

}  // namespace


ClientConnection::ClientConnection(Transport& transport, core::EventLoop& loop,
                                   core::BlockPool& pool, ClientOwner& owner)
    : idle_timer(&ClientConnection::on_idle_timeout, this),
      transport_(transport),
      loop_(loop),
      owner_(owner),
      in_(&pool),
      out_(&pool) {}

bool ClientConnection::start() {
  state_ = State::kConnecting;
  return transport_.register_with(loop_, *this).ok();
}

ClientConnection* connect_plain(const sockaddr* addr, socklen_t len, core::EventLoop& loop,
                                core::BlockPool& pool, ClientOwner& owner) {
  int fd = connect_socket(addr, len);
  if (fd < 0) return nullptr;
  auto* c = new PlainClientConnection(SocketTransport(fd), loop, pool, owner);
  if (!c->start()) {
    delete c;
    return nullptr;
  }
  return c;
}

ClientConnection* connect_tls(const sockaddr* addr, socklen_t len, SSL* ssl,
                              core::EventLoop& loop, core::BlockPool& pool, ClientOwner& owner) {
  int fd = connect_socket(addr, len);
  if (fd < 0) {
    int saved = errno;
    SSL_free(ssl);
    errno = saved;
    return nullptr;
  }
  auto* c = new TlsClientConnection(TlsTransport::client(fd, ssl), loop, pool, owner);
  if (!c->start()) {
    delete c;
    return nullptr;
  }
  return c;
}

void ClientConnection::send_head(const RequestHead& head, std::string_view target) {
  if (state_ != State::kConnecting) state_ = State::kActive;
  ++requests_;
  head_request_ = head.is_head;
  informational_ = 0;
  request_done_ = false;
  head_received_ = false;
  keep_alive_ = true;
  eof_ = false;
  chunked_.reset();
  in_.clear();
  out_.append(head.method);
  out_.append(" ");
  out_.append(target);
  out_.append(" HTTP/1.1\r\n");
  append_fields(out_, head.headers);
  chunked_out_ = false;
  counted_out_ = head.framing == BodyFraming::kContentLength && !head.upgrade;
  body_left_ = counted_out_ ? head.content_length : 0;
  framing_broken_ = false;
  if (head.framing == BodyFraming::kContentLength) {
    out_.append("Content-Length: ");
    append_uint(out_, head.content_length);
    out_.append("\r\n");
  } else if (head.framing == BodyFraming::kChunked) {
    out_.append("Transfer-Encoding: chunked\r\n");
    chunked_out_ = true;
  }
  if (head.upgrade) out_.append("Connection: upgrade\r\n");
  out_.append("\r\n");
  if (head.framing == BodyFraming::kNone) request_done_ = true;
  if (connected()) loop_.schedule(this);
}

void ClientConnection::send_data(std::string_view data, bool end_stream,
                                 const HeaderMap* trailers) {
  if (state_ == State::kClosed || framing_broken_) return;
  if (counted_out_) {
    // The head announced body_left_ more bytes. More, or an end before them, would make the
    // upstream read the rest as another request (or wait forever): refuse the whole exchange.
    if (data.size() > body_left_ || (end_stream && data.size() != body_left_)) {
      framing_broken_ = true;
      loop_.schedule(this);  // fails from run_task(), not inside the caller's call
      return;
    }
    body_left_ -= data.size();
  }
  append_body(out_, data, chunked_out_, end_stream, trailers);
  if (end_stream) request_done_ = true;
  if (connected()) loop_.schedule(this);
}

void ClientConnection::send_tunnel(std::string_view data, bool end_stream) {
  if (state_ != State::kTunnel) return;
  out_.append(data);
  if (end_stream) request_done_ = true;  // shut the write side once flushed
  loop_.schedule(this);
}

void ClientConnection::resume_reading() {
  if (!read_paused_) return;
  read_paused_ = false;
  read_pending_ = true;
  loop_.schedule(this);
}

void ClientConnection::run_task() {
  if (state_ == State::kClosed) return;
  if (framing_broken_) {
    fail(ClientFailure::kRequestFraming, "request body does not match its Content-Length");
    return;
  }
  // A tunnel's end with nothing left to write must still reach the upstream (the half-close
  // happens in flush()), or an upstream waiting for the client's close never sees it.
  if ((!out_.empty() || (state_ == State::kTunnel && request_done_)) && connected()) flush();
  if (state_ == State::kClosed) return;
  if (read_pending_ && !read_paused_) do_read();
}

void ClientConnection::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  events = transport_.ready(events);
  if (state_ == State::kConnecting) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int err = transport_.connect_error();
    if (err != 0 || (events & EPOLLERR) != 0) {
      std::string_view detail = transport_.failure_detail();
      if (detail.empty()) detail = err != 0 ? std::strerror(err) : "connect failed";
      fail(ClientFailure::kConnectFailure, detail);
      return;
    }
    state_ = requests_ > 0 ? State::kActive : State::kIdle;
    if (cb_ != nullptr) cb_->on_connected();
    if (state_ == State::kClosed) return;
  }
  if ((events & EPOLLOUT) != 0 && !out_.empty()) flush();
  if (state_ == State::kClosed) return;
  if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) peer_closed_ = true;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) do_read();
}

void ClientConnection::flush() {
  // The request saw write_blocked() when the buffer crossed the mark; remember that before
  // writing, or a flush that drains everything at once would never wake it up.
  if (out_.size() > kHighWatermark) was_blocked_ = true;
  while (!out_.empty()) {
    long n = transport_.write(out_.data(), out_.size());
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;  // the rest goes on the next EPOLLOUT
    fail(head_received_ ? ClientFailure::kResetAfterHead : ClientFailure::kReset,
         "upstream write failed");
    return;
  }
  if (out_.empty() && state_ == State::kTunnel && request_done_ && !write_shut_) {
    write_shut_ = true;
    transport_.shutdown_write();
  }
  if (out_.size() > kHighWatermark) {
    was_blocked_ = true;
  } else if (was_blocked_ && out_.size() <= kLowWatermark) {
    was_blocked_ = false;
    if (cb_ != nullptr) cb_->on_upstream_write_ready();
  }
}

void ClientConnection::do_read() {
  if (read_paused_) {
    read_pending_ = true;
    return;
  }
  read_pending_ = false;
  while (!eof_) {
    ReadResult r = transport_.read(in_, kReadChunk);
    // A short read is not the end of the input once the upstream has closed: the last data
    // and the FIN can arrive in one segment with one edge, and a close-delimited body ends
    // only at the EOF. Read on until it.
    if (r == ReadResult::kDrained && !peer_closed_) break;
    if (r == ReadResult::kEof) {
      eof_ = true;
      break;
    }
    if (r == ReadResult::kError) {
      std::string detail(transport_.failure_detail());
      if (detail.empty()) detail = std::strerror(errno);
      // What arrived before the failure may be the whole response (a server that answers and
      // resets): deliver it first, and fail only what it left unfinished.
      if (!in_.empty()) process();
      if (state_ == State::kClosed) return;
      if (state_ == State::kIdle) {
        close();  // the response was complete, but the connection cannot be reused
        return;
      }
      fail(head_received_ ? ClientFailure::kResetAfterHead : ClientFailure::kReset, detail);
      return;
    }
    // kMore (or a short read after the peer closed). Until the head is complete keep
    // reading; then deliver this much first
    // (backpressure may pause us) and read on from the loop.
    if (head_received_) {
      read_pending_ = true;
      break;
    }
  }
  process();
  if (read_pending_ && !read_paused_ && state_ != State::kClosed) loop_.schedule(this);
}

void ClientConnection::process() {
  if (in_process_) return;
  in_process_ = true;
  while (state_ != State::kClosed) {
    if (state_ == State::kIdle) {
      // An idle pooled connection that becomes readable was closed by the upstream (or sent
      // junk): it cannot be reused.
      if (eof_ || !in_.empty()) {
        in_process_ = false;
        close();
        return;
      }
      break;
    }
    if (state_ == State::kTunnel) {
      if (!in_.empty() && cb_ != nullptr && !read_paused_) {
        std::string_view v = in_.view();
        size_t n = v.size();
        cb_->on_response_data(v, false);
        if (state_ != State::kClosed) in_.consume(n);
        continue;
      }
      if (in_.empty() && eof_ && cb_ != nullptr) {
        ClientCallbacks* cb = cb_;
        cb_ = nullptr;
        cb->on_response_data({}, true);
        in_process_ = false;
        close();
        return;
      }
      break;
    }
    if (!head_received_) {
      if (in_.empty()) {
        if (eof_) {
          in_process_ = false;
          fail(ClientFailure::kReset, "upstream closed before responding");
          return;
        }
        break;
      }
      if (cb_ == nullptr) {
        in_process_ = false;
        close();
        return;
      }
      ResponseHead& head = cb_->response_head();
      head.headers.clear();
      std::string_view data = in_.view();
      ParseOutcome r = parse_response(data, {}, head_request_, head);
      if (r.kind == ParseOutcome::kIncomplete) {
        if (eof_) {
          in_process_ = false;
          fail(ClientFailure::kReset, "upstream closed in the response head");
          return;
        }
        break;
      }
      if (r.kind == ParseOutcome::kError) {
        in_process_ = false;
        fail(ClientFailure::kProtocolError, r.reason);
        return;
      }
      // Move the head into the request's arena so the read buffer can advance.
      const char* nb = move_fields_to_arena(head.headers, data.data(), r.consumed, cb_->arena());
      head.reason = rebase(head.reason, data.data(), r.consumed, nb);
      in_.consume(r.consumed);
      if (head.status >= 100 && head.status < 200 && head.status != 101) {
        if (++informational_ > kMaxInformational) {
          in_process_ = false;
          fail(ClientFailure::kProtocolError, "too many interim (1xx) responses");
          return;
        }
        cb_->on_informational(head);
        continue;
      }
      head_received_ = true;
      if (head.status == 101) {
        state_ = State::kTunnel;
        keep_alive_ = false;
        request_done_ = false;  // from now on: the client's half-close, via send_tunnel()
        cb_->on_response_headers(false);
        continue;
      }
      resp_framing_ = head.framing;
      resp_remaining_ = head.content_length;
      keep_alive_ = head.keep_alive;
      if (resp_framing_ == BodyFraming::kNone) {
        ClientCallbacks* cb = cb_;
        if (!in_.empty()) keep_alive_ = false;  // bytes after a bodiless response: not reusable
        response_complete();
        cb->on_response_headers(true);
        break;
      }
      cb_->on_response_headers(false);
      continue;
    }
    // Response body.
    if (cb_ == nullptr || read_paused_) break;
    if (in_.empty()) {
      if (eof_) {
        if (resp_framing_ == BodyFraming::kUntilClose) {
          ClientCallbacks* cb = cb_;
          cb_ = nullptr;
          keep_alive_ = false;
          cb->on_response_data({}, true);
          in_process_ = false;
          close();
          return;
        }
        in_process_ = false;
        fail(ClientFailure::kResetAfterHead, "upstream closed in the response body");
        return;
      }
      break;
    }
    std::string_view v = in_.view();
    if (resp_framing_ == BodyFraming::kContentLength) {
      size_t n = v.size() < resp_remaining_ ? v.size() : static_cast<size_t>(resp_remaining_);
      resp_remaining_ -= n;
      ClientCallbacks* cb = cb_;
      if (resp_remaining_ == 0) {
        response_complete();
        cb->on_response_data(v.substr(0, n), true);
        // The connection may already be back in the pool (consume is still ours) or closed
        // (its buffer is released: nothing to consume).
        if (state_ == State::kClosed) break;
        in_.consume(n);
        if (!in_.empty() && state_ == State::kIdle) {
          in_process_ = false;
          close();  // bytes after the response: not reusable
          return;
        }
        break;
      }
      // A callback may close the connection (the stream answered otherwise, or was reset):
      // then its buffer is gone and nothing more is read.
      cb->on_response_data(v.substr(0, n), false);
      if (state_ == State::kClosed) break;
      in_.consume(n);
      continue;
    }
    if (resp_framing_ == BodyFraming::kUntilClose) {
      cb_->on_response_data(v, false);
      if (state_ == State::kClosed) break;
      in_.consume(v.size());
      continue;
    }
    // Chunked.
    std::string_view rest = v;
    std::string_view piece;
    bool done = false;
    bool error = false;
    while (cb_ != nullptr && !read_paused_) {
      auto res = chunked_.decode(rest, piece);
      if (res == ChunkedDecoder::Result::kData) {
        cb_->on_response_data(piece, false);
        if (state_ == State::kClosed) break;
        continue;
      }
      if (res == ChunkedDecoder::Result::kDone) done = true;
      if (res == ChunkedDecoder::Result::kError) error = true;
      break;
    }
    if (state_ == State::kClosed) break;
    in_.consume(v.size() - rest.size());
    if (error) {
      in_process_ = false;
      fail(ClientFailure::kProtocolError, chunked_.error());
      return;
    }
    if (done) {
      ClientCallbacks* cb = cb_;
      response_complete();
      if (chunked_.has_trailers()) {
        // The decoder keeps the strings until the connection's next request, which cannot
        // start before this call returns.
        HeaderMap trailers;
        chunked_.trailers(trailers);
        cb->on_response_trailers(trailers);
      } else {
        cb->on_response_data({}, true);
      }
      if (!in_.empty() && state_ == State::kIdle) {
        in_process_ = false;
        close();
        return;
      }
      break;
    }
    if (rest.empty() && !v.empty()) continue;
    break;
  }
  in_process_ = false;
}

void ClientConnection::response_complete() {
  cb_ = nullptr;
  if (!request_done_ || !keep_alive_ || eof_) {
    // An upstream that answered before reading the whole request, or that asked to close,
    // cannot carry another request.
    keep_alive_ = false;
    close();
    return;
  }
  state_ = State::kIdle;
  owner_.on_client_idle(*this);
}

void ClientConnection::fail(ClientFailure kind, std::string_view detail) {
  ClientCallbacks* cb = cb_;
  cb_ = nullptr;
  close();
  if (cb != nullptr) cb->on_failure(kind, detail);
}

void ClientConnection::on_idle_timeout(void* self) {
  static_cast<ClientConnection*>(self)->close();
}

void ClientConnection::close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  loop_.timers().cancel(idle_timer);
  transport_.close(loop_);
  // Inside process(), the body piece being delivered may be a view into in_ (a response whose
  // completion closes the connection): the buffer then goes with the object (defer_delete).
  if (!in_process_) in_.release();
  out_.release();
  owner_.on_client_closed(*this);
}

}  // namespace citadel::http::http1
