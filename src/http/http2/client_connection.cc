#include "http/http2/client_connection.h"

#include <openssl/ssl.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "http/headers.h"
#include "http/http2/nv_list.h"

namespace citadel::http::http2 {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr int kReadsPerTurn = 16;
// Response body a stream may hold unread (its request paused it: a slow client), and the
// connection's window, given back as soon as data arrives: a paused stream holds only its own
// window, never the connection's, so one slow client cannot stall the other streams sharing
// the upstream connection (nor get a healthy endpoint blamed for their idle timeouts).
constexpr uint32_t kStreamWindow = 64 * 1024;
constexpr int32_t kConnectionWindow = 16 << 20;
constexpr size_t kMaxHeadBytes = 32 * 1024;  // as for an HTTP/1.1 upstream's response head

}  // namespace

// --- one exchange ------------------------------------------------------------------------------

// Owned by its connection (linked in its list) from open_stream() until nghttp2 closes the
// stream or the connection goes; the request using it holds it until its last callback or
// close().
class ClientStream final : public UpstreamStream {
 public:
  explicit ClientStream(ClientConnection& c) : conn_(c), out_(&c.pool_), held_(&c.pool_) {}

  void attach(UpstreamCallbacks* cb) override { cb_ = cb; }
  void detach() override { cb_ = nullptr; }
  bool connected() const override { return conn_.connected_; }
  void send_head(const RequestHead& head, std::string_view target) override;
  void send_data(std::string_view data, bool end_stream, const HeaderMap* trailers) override;
  void send_tunnel(std::string_view, bool) override { fail(UpstreamFailure::kProtocolError,
                                                           "no protocol switch over HTTP/2"); }
  bool write_blocked() const override { return out_.size() > ClientConnection::kHighWatermark; }
  void pause_reading() override { paused_ = true; }
  void resume_reading() override;
  void close() override;

  // From the connection.
  void on_header(std::string_view name, std::string_view value, bool trailer);
  void on_headers_done(bool end_stream, bool trailer);
  void on_data(std::string_view data);
  void on_end();
  void on_closed(uint32_t error_code);
  ssize_t read_body(uint8_t* buf, size_t length, uint32_t* flags);
  void deliver_held();
  // Fails the exchange (detaching the request) with `kind`.
  void fail(UpstreamFailure kind, std::string_view detail);

  ClientConnection& conn_;
  int32_t id_ = -1;
  UpstreamCallbacks* cb_ = nullptr;
  ClientStream* prev = nullptr;
  ClientStream* next = nullptr;
  core::Buffer out_;   // request body nghttp2 has not taken yet
  core::Buffer held_;  // response body received while paused
  std::vector<std::pair<std::string, std::string>> trailers_out_;
  HeaderMap trailers_in_;
  std::string trailer_text_;  // trailer strings (they outlive the callback only until it returns)
  bool head_is_head_ = false;
  bool body_ended_ = false;  // the request body's end was given
  bool deferred_ = false;
  bool head_received_ = false;
  bool end_held_ = false;
  bool trailers_held_ = false;
  bool paused_ = false;
  bool finished_ = false;  // the response ended or failed: the request let go of us
  bool closed_ = false;    // nghttp2 closed the stream
  bool was_blocked_ = false;
  bool needs_delivery_ = false;  // held response data (or its end) to hand over
  bool write_ready_ = false;     // the request body drained: on_upstream_write_ready
  bool pending_failure_ = false;  // the request could not be submitted
  bool head_too_big_ = false;
  int informational_ = 0;
  size_t head_bytes_ = 0;  // of the head (or trailers) being received, RFC 9113 6.5.2's way
};

namespace {

ssize_t read_request_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
  return static_cast<ClientStream*>(source->ptr)->read_body(buf, length, flags);
}

}  // namespace

void ClientStream::send_head(const RequestHead& head, std::string_view target) {
  if (conn_.closed_) return;
  head_is_head_ = head.is_head;
  NvList& nv = *conn_.nv_;  // the connection's: no allocation once it has grown
  nv.clear();
  std::string_view authority = head.authority;
  if (const HeaderField* host = head.headers.find("host")) authority = host->value;
  nv.add(":method", head.method, false);
  nv.add(":scheme", conn_.tls_ ? "https" : "http", false);
  nv.add(":authority", authority, false);
  nv.add(":path", target, false);
  bool te_trailers = false;
  for (const auto& f : head.headers.fields()) {
    if (iequals(f.name, "te")) {
      te_trailers = te_trailers || iequals(f.value, "trailers");
      continue;
    }
    if (connection_specific(f.name) || iequals(f.name, "host") || f.name.empty()) continue;
    nv.add(f.name, f.value);
  }
  if (te_trailers) nv.add("te", "trailers", false);
  if (head.framing == BodyFraming::kContentLength) {
    nv.add("content-length", std::to_string(head.content_length), false);
  }
  auto& list = nv.build();
  if (head.framing == BodyFraming::kNone) {
    body_ended_ = true;
    id_ = nghttp2_submit_request(conn_.session_, nullptr, list.data(), list.size(), nullptr, this);
  } else {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = read_request_body;
    id_ = nghttp2_submit_request(conn_.session_, nullptr, list.data(), list.size(), &provider,
                                 this);
  }
  if (id_ < 0) {
    // No stream id left on this connection (or out of memory): the request fails as a reset
    // (retryable), told from the connection's task, never from inside this call.
    conn_.goaway_ = true;
    pending_failure_ = true;
  }
  conn_.loop_.schedule(&conn_);
}

void ClientStream::send_data(std::string_view data, bool end_stream, const HeaderMap* trailers) {
  if (finished_ || body_ended_ || conn_.closed_) return;
  out_.append(data);
  if (out_.size() > ClientConnection::kHighWatermark) was_blocked_ = true;
  if (end_stream) {
    body_ended_ = true;
    if (trailers != nullptr) {
      for (const auto& f : trailers->fields()) {
        if (connection_specific(f.name) || iequals(f.name, "host") || f.name.empty() ||
            f.name.front() == ':') {
          continue;
        }
        std::string n(f.name);
        for (char& c : n) c = ascii_lower(c);
        trailers_out_.emplace_back(std::move(n), std::string(f.value));
      }
    }
  }
  if (deferred_ && id_ > 0 && (!data.empty() || end_stream)) {
    deferred_ = false;
    nghttp2_session_resume_data(conn_.session_, id_);
  }
  conn_.loop_.schedule(&conn_);
}

ssize_t ClientStream::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = std::min(length, out_.size());
  if (n > 0) {
    std::memcpy(buf, out_.data(), n);
    out_.consume(n);
  }
  if (out_.empty()) {
    if (body_ended_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!trailers_out_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        NvList& nv = *conn_.nv_;
        nv.clear();
        for (const auto& [k, v] : trailers_out_) nv.add(k, v, false);
        auto& list = nv.build();
        nghttp2_submit_trailer(conn_.session_, id_, list.data(), list.size());
      }
      out_.release();
    } else if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  if (was_blocked_ && out_.size() <= ClientConnection::kLowWatermark) {
    was_blocked_ = false;
    write_ready_ = true;  // on_upstream_write_ready from the connection's task
    conn_.loop_.schedule(&conn_);
  }
  return static_cast<ssize_t>(n);
}

void ClientStream::on_header(std::string_view name, std::string_view value, bool trailer) {
  if (cb_ == nullptr || finished_) return;
  head_bytes_ += name.size() + value.size() + 32;
  if (head_bytes_ > kMaxHeadBytes) {
    head_too_big_ = true;  // failed at the block's end: nghttp2 is in the middle of it
    return;
  }
  core::Arena& a = cb_->arena();
  if (trailer) {
    trailers_in_.add(a.copy(name), a.copy(value));
    return;
  }
  ResponseHead& h = cb_->response_head();
  if (name == ":status") {
    int status = 0;
    for (char c : value) status = status * 10 + (c - '0');
    h.status = status;
    return;
  }
  if (!name.empty() && name.front() == ':') return;
  h.headers.add(a.copy(name), a.copy(value));
}

void ClientStream::on_headers_done(bool end_stream, bool trailer) {
  if (cb_ == nullptr || finished_) return;
  if (head_too_big_) {
    fail(UpstreamFailure::kProtocolError,
         trailer ? "response trailers over 32 KiB" : "response head over 32 KiB");
    return;
  }
  if (trailer) {
    on_end();
    return;
  }
  ResponseHead& h = cb_->response_head();
  h.version_minor = 1;
  h.keep_alive = true;
  if (h.status >= 100 && h.status < 200) {
    if (++informational_ > kMaxInformational) {
      fail(UpstreamFailure::kProtocolError, "too many interim (1xx) responses");
      return;
    }
    if (h.status != 101) cb_->on_informational(h);
    h.headers.clear();
    head_bytes_ = 0;
    return;
  }
  head_received_ = true;
  head_bytes_ = 0;  // the trailers get their own 32 KiB
  const bool bodiless = end_stream || head_is_head_ || h.status == 204 || h.status == 304;
  if (const HeaderField* cl = h.headers.find("content-length"); cl != nullptr && !bodiless) {
    uint64_t n = 0;
    for (char c : cl->value) n = n * 10 + static_cast<uint64_t>(c - '0');
    h.framing = BodyFraming::kContentLength;
    h.content_length = n;
  } else {
    // A body of unknown length (gRPC's, for one) goes on chunked to an HTTP/1.1 client.
    h.framing = bodiless ? BodyFraming::kNone : BodyFraming::kChunked;
  }
  h.headers.remove("content-length");  // the downstream codec writes framing itself
  if (end_stream) {
    finished_ = true;
    UpstreamCallbacks* cb = cb_;
    cb_ = nullptr;
    cb->on_response_headers(true);
    return;
  }
  cb_->on_response_headers(false);
}

void ClientStream::on_data(std::string_view data) {
  if (cb_ == nullptr || finished_) {
    nghttp2_session_consume(conn_.session_, id_, data.size());
    return;
  }
  if (paused_ || !held_.empty()) {
    held_.append(data);  // at most the stream's window
    nghttp2_session_consume_connection(conn_.session_, data.size());
    return;
  }
  cb_->on_response_data(data, false);
  nghttp2_session_consume(conn_.session_, id_, data.size());
}

void ClientStream::on_end() {
  if (cb_ == nullptr || finished_) return;
  if (paused_ || !held_.empty()) {
    end_held_ = true;
    return;
  }
  finished_ = true;
  UpstreamCallbacks* cb = cb_;
  cb_ = nullptr;
  if (!body_ended_ && id_ > 0 && !closed_) {
    // The response is complete before the request body: the rest is not wanted (RFC 9113 8.1).
    nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
    conn_.loop_.schedule(&conn_);
  }
  if (trailers_in_.size() != 0) cb->on_response_trailers(trailers_in_);
  else cb->on_response_data({}, true);
}

void ClientStream::resume_reading() {
  paused_ = false;
  if (!held_.empty() || end_held_) {
    needs_delivery_ = true;
    conn_.loop_.schedule(&conn_);
  }
}

void ClientStream::deliver_held() {
  needs_delivery_ = false;
  while (cb_ != nullptr && !finished_ && !paused_ && !held_.empty()) {
    size_t n = std::min<size_t>(held_.size(), 64 * 1024);
    cb_->on_response_data(std::string_view(held_.data(), n), false);
    held_.consume(n);
    if (!closed_) nghttp2_session_consume_stream(conn_.session_, id_, n);
  }
  if (held_.empty()) {
    held_.release();
    if (end_held_ && !paused_) {
      end_held_ = false;
      on_end();
    }
  }
}

void ClientStream::fail(UpstreamFailure kind, std::string_view detail) {
  if (finished_) return;
  finished_ = true;
  UpstreamCallbacks* cb = cb_;
  cb_ = nullptr;
  if (id_ > 0 && !closed_ && !conn_.closed_) {
    nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    conn_.loop_.schedule(&conn_);
  }
  if (cb != nullptr) cb->on_failure(kind, detail);
}

void ClientStream::close() {
  // The request abandons the exchange: no callback follows.
  cb_ = nullptr;
  if (closed_ && id_ > 0) {
    // nghttp2 is done with it; only its held response kept it: nothing touches it after this.
    finished_ = true;
    conn_.unlink(this);
    conn_.capacity_changed_ = true;
    conn_.loop_.schedule(&conn_);
    delete this;
    return;
  }
  if (!finished_) {
    finished_ = true;
    if (id_ > 0 && !closed_ && !conn_.closed_) {
      nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
      conn_.loop_.schedule(&conn_);
    }
  }
  if (id_ <= 0 && !closed_) {
    // Never submitted (or refused at once): nghttp2 will not close it for us. Nothing touches
    // the stream after close() (the request has let go of it).
    closed_ = true;
    conn_.unlink(this);
    conn_.capacity_changed_ = true;
    conn_.loop_.schedule(&conn_);
    delete this;
  }
}

void ClientStream::on_closed(uint32_t error_code) {
  closed_ = true;
  if (!end_held_) held_.release();  // (its connection window went back when it arrived)
  if (finished_) return;
  if (error_code == NGHTTP2_NO_ERROR && head_received_) {
    on_end();  // a close that ends the response (END_STREAM was on the last frame)
    // Delivered, or held for a paused request: it goes out when the request resumes (the
    // stream outlives nghttp2's, see on_stream_close).
    if (finished_ || end_held_) return;
  }
  const bool refused = error_code == NGHTTP2_REFUSED_STREAM;
  std::string why = refused ? "stream refused by the upstream (retryable)"
                            : std::string("stream reset by the upstream: ") +
                                  nghttp2_http2_strerror(error_code);
  // A malformed response is refused by nghttp2 with PROTOCOL_ERROR: counted as what it is.
  UpstreamFailure kind = error_code == NGHTTP2_PROTOCOL_ERROR ? UpstreamFailure::kProtocolError
                         : head_received_                     ? UpstreamFailure::kResetAfterHead
                                                              : UpstreamFailure::kReset;
  fail(kind, why);
}

// --- nghttp2's callbacks -----------------------------------------------------------------------

struct ClientCallbacks {
  static ClientConnection& conn(void* user) { return *static_cast<ClientConnection*>(user); }
  static ClientStream* stream(nghttp2_session* s, int32_t id) {
    return static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(s, id));
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    ClientStream* s = stream(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    // After the final response head, a HEADERS frame can only be trailers.
    s->on_header({reinterpret_cast<const char*>(name), namelen},
                 {reinterpret_cast<const char*>(value), valuelen}, s->head_received_);
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    ClientConnection& c = conn(user);
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        ClientStream* s = stream(session, frame->hd.stream_id);
        if (s == nullptr) return 0;
        s->on_headers_done(end, s->head_received_);
        return 0;
      }
      case NGHTTP2_DATA:
        if (end) {
          if (ClientStream* s = stream(session, frame->hd.stream_id)) s->on_end();
        }
        return 0;
      case NGHTTP2_SETTINGS:
        c.capacity_changed_ = true;
        return 0;
      case NGHTTP2_GOAWAY:
        c.goaway_ = true;  // streams above its last id are closed by nghttp2 as refused
        return 0;
      default:
        return 0;
    }
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                           size_t len, void*) {
    ClientStream* s = stream(session, id);
    if (s == nullptr) {
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    s->on_data({reinterpret_cast<const char*>(data), len});
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, int32_t id, uint32_t error_code,
                             void* user) {
    ClientConnection& c = conn(user);
    ClientStream* s = stream(session, id);
    if (s == nullptr) return 0;
    nghttp2_session_set_stream_user_data(session, id, nullptr);
    s->on_closed(error_code);
    c.capacity_changed_ = true;
    // A complete response still held for a paused request stays until it is delivered (or the
    // request lets go): the connection's task deletes it then.
    if (!s->finished_ && s->end_held_) return 0;
    c.unlink(s);
    delete s;
    return 0;
  }
};

// --- the connection ----------------------------------------------------------------------------

ClientConnection::ClientConnection(Transport& transport, core::EventLoop& loop,
                                   core::BlockPool& pool, ClientOwner& owner, bool tls)
    : idle_timer(&ClientConnection::on_idle_timeout, this),
      transport_(transport),
      loop_(loop),
      pool_(pool),
      owner_(owner),
      nv_(std::make_unique<NvList>()),
      in_(&pool),
      out_(&pool),
      tls_(tls) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_option* opt = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return;
  nghttp2_session_callbacks_set_on_header_callback(cb, ClientCallbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, ClientCallbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, ClientCallbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, ClientCallbacks::on_stream_close);
  if (nghttp2_option_new(&opt) == 0) {
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100);  // until its SETTINGS say
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_session_client_new2(&session_, cb, this, opt);
    nghttp2_option_del(opt);
  }
  nghttp2_session_callbacks_del(cb);
  if (session_ == nullptr) return;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
}

ClientConnection::~ClientConnection() {
  loop_.timers().cancel(idle_timer);
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool ClientConnection::start() {
  if (session_ == nullptr) return false;
  return transport_.register_with(loop_, *this).ok();
}

bool ClientConnection::can_open() const {
  if (closed_ || goaway_ || session_ == nullptr) return false;
  uint32_t limit = nghttp2_session_get_remote_settings(session_,
                                                       NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_ < limit && nghttp2_session_get_next_stream_id(session_) < (1u << 30);
}

UpstreamStream* ClientConnection::open_stream() {
  if (!can_open()) return nullptr;
  auto* s = new ClientStream(*this);
  link(s);
  loop_.timers().cancel(idle_timer);
  return s;
}

void ClientConnection::link(ClientStream* s) {
  s->next = head_;
  if (head_ != nullptr) head_->prev = s;
  head_ = s;
  ++streams_;
}

void ClientConnection::unlink(ClientStream* s) {
  if (s->prev != nullptr) s->prev->next = s->next;
  else if (head_ == s) head_ = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
  --streams_;
}

void ClientConnection::on_io(uint32_t events) {
  if (closed_) return;
  events = transport_.ready(events);
  if (!connected_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int err = transport_.connect_error();
    if (err != 0 || (events & EPOLLERR) != 0) {
      std::string detail(transport_.failure_detail());
      if (detail.empty()) detail = err != 0 ? std::strerror(err) : "connect failed";
      fail_all(UpstreamFailure::kConnectFailure, detail);
      return;
    }
    if (tls_) {
      auto* t = static_cast<TlsTransport*>(&transport_);
      if (t->info()->alpn != "h2") {
        fail_all(UpstreamFailure::kConnectFailure, "the upstream did not choose h2 (ALPN)");
        return;
      }
    }
    connected_ = true;
    for (ClientStream* s = head_; s != nullptr;) {
      ClientStream* next = s->next;
      if (s->cb_ != nullptr) s->cb_->on_connected();
      s = next;
    }
    if (closed_) return;
  }
  if ((events & EPOLLOUT) != 0 && !out_.empty()) flush();
  if (closed_) return;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) do_read();
  if (!closed_) send();
}

void ClientConnection::do_read() {
  read_pending_ = false;
  for (int i = 0; i < kReadsPerTurn && !closed_; ++i) {
    ReadResult r = transport_.read(in_, kReadChunk);
    if (!in_.empty()) {
      in_callback_ = true;
      ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in_.data()),
                                            in_.size());
      in_callback_ = false;
      in_.clear();
      if (pending_close_) {
        fail_all(pending_kind_, pending_detail_);
        return;
      }
      if (rv < 0) {
        fail_all(UpstreamFailure::kProtocolError, nghttp2_strerror(static_cast<int>(rv)));
        return;
      }
    }
    switch (r) {
      case ReadResult::kDrained:
        if (in_.empty()) in_.release();
        return;
      case ReadResult::kMore:
        break;
      case ReadResult::kEof:
      case ReadResult::kError: {
        std::string detail(transport_.failure_detail());
        if (detail.empty()) detail = r == ReadResult::kEof ? "upstream closed" : "read error";
        fail_all(UpstreamFailure::kReset, detail);
        return;
      }
    }
  }
  read_pending_ = true;
  loop_.schedule(this);
}

void ClientConnection::run_task() {
  if (closed_) return;
  if (pending_close_) {
    fail_all(pending_kind_, pending_detail_);
    return;
  }
  for (ClientStream* s = head_; s != nullptr && !closed_;) {
    ClientStream* next = s->next;
    if (s->pending_failure_) {
      s->pending_failure_ = false;
      s->fail(UpstreamFailure::kReset, "no stream left on the upstream connection");
      // Never submitted: nghttp2 will not close it; the request has let go of it.
      s->closed_ = true;
      unlink(s);
      capacity_changed_ = true;
      delete s;
    } else {
      if (s->write_ready_) {
        s->write_ready_ = false;
        if (s->cb_ != nullptr && !s->finished_) s->cb_->on_upstream_write_ready();
      }
      if (s->needs_delivery_ && !closed_) s->deliver_held();
      if (s->closed_ && s->finished_) {  // its held response went out after nghttp2 closed it
        unlink(s);
        capacity_changed_ = true;
        delete s;
      }
    }
    s = next;
  }
  if (closed_) return;
  if (read_pending_ && connected_) do_read();
  if (!closed_) send();
  if (!closed_ && capacity_changed_) {
    capacity_changed_ = false;
    owner_.on_h2_capacity(*this);
  }
}

void ClientConnection::send() {
  if (closed_ || !connected_) return;
  if (in_callback_) {
    loop_.schedule(this);
    return;
  }
  while (out_.size() < kHighWatermark) {
    const uint8_t* data = nullptr;
    in_callback_ = true;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    in_callback_ = false;
    if (pending_close_) {
      fail_all(pending_kind_, pending_detail_);
      return;
    }
    if (n < 0) {
      fail_all(UpstreamFailure::kProtocolError, nghttp2_strerror(static_cast<int>(n)));
      return;
    }
    if (n == 0) break;
    out_.append(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
  }
  flush();
  if (closed_) return;
  if (capacity_changed_) loop_.schedule(this);
  if (goaway_ && streams_ == 0 && out_.empty()) close();
  else if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 &&
           out_.empty()) {
    close();
  }
}

void ClientConnection::flush() {
  while (!out_.empty()) {
    long n = transport_.write(out_.data(), out_.size());
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;
    fail_all(UpstreamFailure::kReset, "write error");
    return;
  }
  if (out_.empty()) out_.release();
}

void ClientConnection::fail_all(UpstreamFailure kind, std::string_view detail) {
  if (closed_) return;
  if (in_callback_) {
    // Inside nghttp2 (a request's callback closed the connection): nghttp2 still holds the
    // session and the streams. Closed from the loop once it has returned.
    if (!pending_close_) {
      pending_close_ = true;
      pending_kind_ = kind;
      pending_detail_ = std::string(detail);
    }
    loop_.schedule(this);
    return;
  }
  std::string why(detail);  // it may point into the transport, which close() resets
  closed_ = true;
  while (head_ != nullptr) {
    ClientStream* s = head_;
    unlink(s);
    s->closed_ = true;
    if (!s->finished_) {
      s->finished_ = true;
      UpstreamCallbacks* cb = s->cb_;
      s->cb_ = nullptr;
      if (cb != nullptr) cb->on_failure(kind, why);
    }
    delete s;
  }
  loop_.timers().cancel(idle_timer);
  transport_.close(loop_);
  in_.release();
  out_.release();
  owner_.on_h2_closed(*this);
}

void ClientConnection::close() { fail_all(UpstreamFailure::kReset, "connection closed"); }

void ClientConnection::on_idle_timeout(void* self) {
  auto* c = static_cast<ClientConnection*>(self);
  if (c->streams_ == 0) c->close();
}

ClientConnection* connect(const sockaddr* addr, socklen_t len, SSL* ssl, core::EventLoop& loop,
                          core::BlockPool& pool, ClientOwner& owner) {
  int fd = connect_socket(addr, len);
  if (fd < 0) {
    int saved = errno;
    if (ssl != nullptr) SSL_free(ssl);
    errno = saved;
    return nullptr;
  }
  ClientConnection* c = nullptr;
  if (ssl != nullptr) {
    c = new TlsClientConnection(TlsTransport::client(fd, ssl), loop, pool, owner, true);
  } else {
    c = new PlainClientConnection(SocketTransport(fd), loop, pool, owner, false);
  }
  if (!c->start()) {
    delete c;
    errno = ENOMEM;
    return nullptr;
  }
  return c;
}

}  // namespace citadel::http::http2
