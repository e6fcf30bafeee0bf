#include "http/http2/server_connection.h"

#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cstring>

#include "http/headers.h"
#include "http/http2/nv_list.h"
#include "http/http1/parser.h"

namespace citadel::http::http2 {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr int kReadsPerTurn = 16;            // then the rest from a loop task: others get a turn
constexpr size_t kDeliverPiece = 64 * 1024;  // held request body handed over per call
constexpr uint64_t kGoawayGraceMs = 1000;    // between the GOAWAY notice and the final GOAWAY
constexpr uint64_t kTerminateLingerMs = 1000;


}  // namespace


// --- a stream ----------------------------------------------------------------------------------

class Stream final : public ServerStream {
 public:
  Stream(ServerConnection& c, int32_t id)
      : conn_(c), id_(id), out_(&c.pool_), held_(&c.pool_),
        body_timer_(&Stream::on_body_timer, this), request_timer_(&Stream::on_body_timer, this) {}
  ~Stream() {
    conn_.buffered_ -= out_.size();
    conn_.loop_.timers().cancel(body_timer_);
    conn_.loop_.timers().cancel(request_timer_);
  }

  // ServerStream
  void send_informational(const ResponseHead& head) override;
  void send_headers(ResponseHead& head, bool end_stream) override;
  void send_data(std::string_view data, bool end_stream) override;
  void send_trailers(const HeaderMap& trailers) override;
  // Above the stream's own watermark, or while all streams together hold more than the
  // connection's budget (a client that opens many streams and reads none must not make the
  // server buffer a watermark per stream).
  bool write_blocked() const override {
    return out_.size() > conn_.settings_->high_watermark ||
           conn_.buffered_ > conn_.buffer_budget();
  }
  void pause_request_body() override { paused_ = true; }
  void resume_request_body() override;
  void reset() override;
  // Streams end on their own in HTTP/2; the connection stays.
  void close_after_response() override {}
  const ConnectionInfo& connection() const override { return conn_.info_; }

  // From the connection's nghttp2 callbacks.
  int on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value);
  void on_request_head(bool end_stream);
  void on_request_data(std::string_view data);
  void on_request_end(bool trailers);
  void on_closed(uint32_t error_code);
  void on_sent_end();
  ssize_t read_body(uint8_t* buf, size_t length, uint32_t* flags);
  // From the connection's task: held request body, once resumed.
  void deliver_held();
  void answer_locally(int status, std::string_view reason);
  // The handler is gone: request body it will never take gives its window back (the connection
  // window is shared, so a held piece left behind would stall every later upload).
  void drop_held();
  static void on_body_timer(void* self);
  void arm_body_timer();

  ServerConnection& conn_;
  const int32_t id_;
  StreamHandler* handler_ = nullptr;
  Stream* prev = nullptr;
  Stream* next = nullptr;
  core::Buffer out_;   // response body nghttp2 has not taken yet
  core::Buffer held_;  // request body received while paused (its window not yet given back)
  std::vector<std::pair<std::string, std::string>> trailers_out_;
  HeaderMap trailers_in_;  // strings in the handler's arena
  core::Timer body_timer_;     // body_idle while the request body comes
  core::Timer request_timer_;  // the listener's whole-request timeout
  size_t header_bytes_ = 0;
  uint32_t header_count_ = 0;
  int local_error_ = 0;  // the head broke a limit: answered with this status
  std::string_view local_reason_;
  bool head_done_ = false;
  bool request_ended_ = false;   // the client's END_STREAM arrived
  bool end_held_ = false;        // ... while body was held: delivered after it
  bool trailers_held_ = false;
  bool paused_ = false;
  bool response_started_ = false;
  bool response_ended_ = false;  // the handler gave the end (data may still wait in out_)
  bool response_sent_ = false;   // nghttp2 sent END_STREAM
  bool deferred_ = false;        // nghttp2 waits for resume_data
  bool was_blocked_ = false;
  bool wants_write_ready_ = false;
  bool needs_delivery_ = false;
  bool reset_ = false;
  bool closed_ = false;
  bool is_head_ = false;
};

namespace {

ssize_t read_body_cb(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                     nghttp2_data_source* source, void*) {
  return static_cast<Stream*>(source->ptr)->read_body(buf, length, flags);
}

}  // namespace

int Stream::on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value) {
  if (handler_ == nullptr) return 0;
  const auto& limits = conn_.settings_->limits;
  header_bytes_ += name.size() + value.size() + 32;  // RFC 9113 6.5.2's accounting
  if (name.empty() || name.front() != ':') ++header_count_;  // fields, as HTTP/1.1 counts them
  if (header_bytes_ > 8 * limits.max_head_bytes + 65536) {
    // Far past the limit in one block: decompression without end (an HPACK bomb). The stream
    // is refused (nghttp2 resets it) and the connection ends.
    conn_.terminate(NGHTTP2_ENHANCE_YOUR_CALM, "header list flood (HPACK bomb)");
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (header_bytes_ > limits.max_head_bytes || header_count_ > limits.max_header_count) {
    local_error_ = 431;
    local_reason_ = "request header fields too large";
    return 0;
  }
  if (local_error_ != 0) return 0;
  core::Arena& a = handler_->arena();
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {  // trailers
    trailers_in_.add(a.copy(name), a.copy(value));
    return 0;
  }
  RequestHead& h = handler_->request_head();
  if (name.front() == ':') {
    if (name == ":method") h.method = a.copy(value);
    else if (name == ":path") h.target = a.copy(value);
    else if (name == ":authority") h.authority = a.copy(value);
    // :scheme is the client's view; the head carries the listener's (as for HTTP/1.1).
    return 0;
  }
  if (name == "cookie") {
    // Split cookie fields are joined for HTTP/1.1 targets (RFC 9113, 8.2.3).
    for (auto& f : h.headers.fields()) {
      if (f.name == "cookie") {
        f.value = a.concat({f.value, "; ", value});
        return 0;
      }
    }
  }
  h.headers.add(a.copy(name), a.copy(value));
  return 0;
}

void Stream::answer_locally(int status, std::string_view reason) {
  conn_.owner_.on_protocol_error(&conn_.info_, status, reason);
  if (StreamHandler* h = handler_) {
    handler_ = nullptr;
    h->on_reset(reason, status);
    h->on_complete();
  }
  drop_held();
  ResponseHead head;
  head.status = status;
  head.headers.add("content-type", "text/plain");
  std::string body = std::string(reason) + "\n";
  head.framing = BodyFraming::kContentLength;
  head.content_length = body.size();
  send_headers(head, false);
  send_data(body, true);
}

void Stream::on_request_head(bool end_stream) {
  head_done_ = true;
  request_ended_ = end_stream;
  conn_.arm_idle();  // the header timeout no longer applies to this stream
  if (handler_ == nullptr) return;
  if (local_error_ != 0) {
    answer_locally(local_error_, local_reason_);
    return;
  }
  RequestHead& h = handler_->request_head();
  h.scheme = conn_.info_.tls ? "https" : "http";
  h.version_minor = 1;
  h.version_major = 2;
  h.keep_alive = true;
  is_head_ = h.method == "HEAD";
  h.is_head = is_head_;
  if (h.method == "CONNECT") {
    answer_locally(501, "CONNECT is not supported over HTTP/2");
    return;
  }
  if (!http1::valid_request_target(h.target) || (h.target.front() != '/' && h.target != "*")) {
    answer_locally(400, "invalid request target");
    return;
  }
  size_t q = h.target.find('?');
  h.path = h.target.substr(0, q);
  h.query = q == std::string_view::npos ? std::string_view() : h.target.substr(q + 1);
  if (!h.authority.empty()) {
    if (!http1::valid_host_value(h.authority)) {
      answer_locally(400, "invalid :authority");
      return;
    }
    // :authority is the host (RFC 9113, 8.3.1): the target sees it as Host, whatever Host said.
    h.headers.set("host", h.authority);
  } else if (const HeaderField* host = h.headers.find("host")) {
    if (h.headers.count("host") > 1 || !http1::valid_host_value(host->value)) {
      answer_locally(400, "invalid Host");
      return;
    }
    h.authority = host->value;
  } else {
    answer_locally(400, "missing :authority");
    return;
  }
  if (end_stream) {
    h.framing = BodyFraming::kNone;
  } else if (const HeaderField* cl = h.headers.find("content-length")) {
    // nghttp2 has checked it is one number, and checks the DATA against it.
    uint64_t n = 0;
    for (char c : cl->value) n = n * 10 + static_cast<uint64_t>(c - '0');
    h.framing = BodyFraming::kContentLength;
    h.content_length = n;
  } else {
    h.framing = BodyFraming::kChunked;  // a body of unknown length
  }
  if (!end_stream) {
    // A client waiting for 100 (RFC 9110 10.1.1) gets it here, as from the HTTP/1 codec: the
    // upstream's own 100 is not passed on.
    if (const HeaderField* e = h.headers.find("expect")) {
      if (iequals(e->value, "100-continue")) {
        ResponseHead cont;
        cont.status = 100;
        send_informational(cont);
      }
    }
    arm_body_timer();
  }
  if (conn_.settings_->request_timeout_ms != 0) {
    conn_.loop_.arm(request_timer_, conn_.settings_->request_timeout_ms);
  }
  handler_->on_request_headers(end_stream);
}

void Stream::arm_body_timer() {
  if (conn_.settings_->body_idle_timeout_ms != 0 && !request_ended_) {
    conn_.loop_.arm(body_timer_, conn_.settings_->body_idle_timeout_ms);
  }
}

// A request body that stalls (no DATA for body_idle) or a request over its whole time: 408
// before a response started (504 when waiting for it), else the stream is reset. The HTTP/1
// codec answers the same way.
void Stream::on_body_timer(void* self) {
  auto* s = static_cast<Stream*>(self);
  if (s->closed_ || s->reset_ || s->conn_.closed_) return;
  const bool waiting = s->request_ended_ && s->end_held_ == false && s->held_.empty();
  if (s->response_started_) {
    if (StreamHandler* h = s->handler_) {
      s->handler_ = nullptr;
      h->on_reset("request timeout", 0);
      h->on_complete();
    }
    s->reset();
    s->conn_.loop_.schedule(&s->conn_);
    return;
  }
  s->answer_locally(waiting ? 504 : 408, waiting ? "request timeout" : "request body timeout");
  s->conn_.loop_.schedule(&s->conn_);
}

void Stream::on_request_data(std::string_view data) {
  arm_body_timer();
  if (handler_ != nullptr && !paused_ && held_.empty()) {
    handler_->on_request_data(data, false);
    nghttp2_session_consume(conn_.session_, id_, data.size());
    return;
  }
  if (handler_ == nullptr) {
    // Nobody reads it (reset, answered early): give the window back at once.
    nghttp2_session_consume(conn_.session_, id_, data.size());
    return;
  }
  held_.append(data);  // at most the stream's window: it is given back as it is delivered
}

void Stream::on_request_end(bool trailers) {
  request_ended_ = true;
  conn_.loop_.timers().cancel(body_timer_);
  if (handler_ == nullptr) return;
  if (paused_ || !held_.empty()) {
    end_held_ = true;
    trailers_held_ = trailers;
    return;
  }
  if (trailers) handler_->on_request_trailers(trailers_in_);
  else handler_->on_request_data({}, true);
}

void Stream::drop_held() {
  if (!held_.empty()) {
    if (!closed_) nghttp2_session_consume(conn_.session_, id_, held_.size());
    else nghttp2_session_consume_connection(conn_.session_, held_.size());
  }
  held_.release();
  end_held_ = false;
  conn_.loop_.timers().cancel(body_timer_);
}

void Stream::deliver_held() {
  needs_delivery_ = false;
  while (handler_ != nullptr && !paused_ && !held_.empty()) {
    size_t n = std::min(held_.size(), kDeliverPiece);
    handler_->on_request_data(std::string_view(held_.data(), n), false);
    held_.consume(n);
    if (!closed_) nghttp2_session_consume(conn_.session_, id_, n);
  }
  if (handler_ != nullptr && !paused_ && held_.empty() && end_held_) {
    end_held_ = false;
    if (trailers_held_) handler_->on_request_trailers(trailers_in_);
    else handler_->on_request_data({}, true);
  }
  if (held_.empty()) held_.release();
}

void Stream::resume_request_body() {
  paused_ = false;
  if (!held_.empty() || end_held_) {
    needs_delivery_ = true;
    conn_.loop_.schedule(&conn_);
  }
}

void Stream::send_informational(const ResponseHead& head) {
  if (closed_ || reset_ || response_started_ || conn_.closed_) return;
  conn_.build_nv(head, true);
  auto& list = conn_.nv_->build();
  nghttp2_submit_headers(conn_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, list.data(), list.size(),
                         nullptr);
  conn_.loop_.schedule(&conn_);
}

void Stream::send_headers(ResponseHead& head, bool end_stream) {
  if (closed_ || reset_ || response_started_ || conn_.closed_) return;
  response_started_ = true;
  const bool no_body = is_head_ || head.status == 204 || head.status == 304;
  conn_.build_nv(head, false);
  if (end_stream || no_body) {
    response_ended_ = true;
    auto& list = conn_.nv_->build();
    nghttp2_submit_response(conn_.session_, id_, list.data(), list.size(), nullptr);
  } else {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = read_body_cb;
    auto& list = conn_.nv_->build();
    nghttp2_submit_response(conn_.session_, id_, list.data(), list.size(), &provider);
  }
  conn_.loop_.schedule(&conn_);
}

void Stream::send_data(std::string_view data, bool end_stream) {
  if (closed_ || reset_ || !response_started_ || response_ended_ || conn_.closed_) return;
  out_.append(data);
  conn_.buffered_ += data.size();
  if (write_blocked()) was_blocked_ = true;
  if (end_stream) response_ended_ = true;
  if (deferred_ && (!data.empty() || end_stream)) {
    deferred_ = false;
    nghttp2_session_resume_data(conn_.session_, id_);
  }
  conn_.loop_.schedule(&conn_);
}

void Stream::send_trailers(const HeaderMap& trailers) {
  if (closed_ || reset_ || !response_started_ || response_ended_ || conn_.closed_) return;
  for (const auto& f : trailers.fields()) {
    if (connection_specific(f.name) || f.name.empty() || f.name.front() == ':') continue;
    std::string name(f.name);
    for (char& c : name) c = ascii_lower(c);
    trailers_out_.emplace_back(std::move(name), std::string(f.value));
  }
  send_data({}, true);
}

void Stream::reset() {
  if (StreamHandler* h = handler_) {  // the handler expects no more calls, but on_complete
    handler_ = nullptr;
    h->on_complete();
  }
  if (conn_.closed_) return;
  drop_held();
  if (closed_ || reset_) return;
  reset_ = true;
  nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  conn_.loop_.schedule(&conn_);
}

ssize_t Stream::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = std::min(length, out_.size());
  if (n > 0) {
    std::memcpy(buf, out_.data(), n);
    out_.consume(n);
    conn_.buffered_ -= n;
  }
  if (out_.empty()) {
    if (response_ended_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!trailers_out_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        conn_.build_trailer_nv(trailers_out_);
        auto& list = conn_.nv_->build();
        nghttp2_submit_trailer(conn_.session_, id_, list.data(), list.size());
      }
      out_.release();
    } else if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  if (was_blocked_ && out_.size() <= conn_.settings_->low_watermark &&
      conn_.buffered_ <= conn_.buffer_budget() / 2) {
    was_blocked_ = false;
    wants_write_ready_ = true;  // told from the connection, outside nghttp2
  }
  return static_cast<ssize_t>(n);
}

void Stream::on_sent_end() {
  response_sent_ = true;
  // A complete response ends the exchange; a request body still coming is not wanted any more
  // (RFC 9113, 8.1: RST_STREAM with NO_ERROR).
  if (!request_ended_ && !closed_ && !reset_) {
    reset_ = true;
    nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
  }
}

void Stream::on_closed(uint32_t error_code) {
  closed_ = true;
  if (StreamHandler* h = handler_) {
    handler_ = nullptr;
    if (!response_sent_) {
      h->on_reset(error_code == NGHTTP2_NO_ERROR ? "stream closed" : "stream reset", 0);
    }
    h->on_complete();
  }
  drop_held();
}

// --- nghttp2's callbacks -----------------------------------------------------------------------

struct Callbacks {
  static ServerConnection& conn(void* user) { return *static_cast<ServerConnection*>(user); }
  static Stream* stream(nghttp2_session* s, int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(s, id));
  }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    ServerConnection& c = conn(user);
    auto* s = new Stream(c, frame->hd.stream_id);
    c.seen_stream_ = true;
    c.link(s);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    s->handler_ = c.factory_.new_stream(*s);
    c.arm_idle();
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                       void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = stream(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    return s->on_header(frame, {reinterpret_cast<const char*>(name), namelen},
                        {reinterpret_cast<const char*>(value), valuelen});
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void*) {
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_DATA: {
        if (end) {
          if (Stream* s = stream(session, frame->hd.stream_id)) s->on_request_end(false);
        }
        return 0;
      }
      case NGHTTP2_HEADERS: {
        Stream* s = stream(session, frame->hd.stream_id);
        if (s == nullptr) return 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          s->on_request_head(end);
        } else if (end) {
          s->on_request_end(true);
        }
        return 0;
      }
      default:
        return 0;
    }
  }

  // Every frame's header, before its payload is read (also frames nghttp2 then drops, such as
  // PRIORITY with RFC 7540 priorities off): the control-frame budget is charged here.
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
    ServerConnection& c = conn(user);
    if (hd->type == NGHTTP2_DATA) {
      // Empty DATA frames in a row, whatever the stream's state (nghttp2 drops those for a
      // closed stream before any other callback): a flood that costs us work and the client
      // nothing.
      if (hd->length != 0 || (hd->flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        c.empty_frames_ = 0;
      } else if (++c.empty_frames_ > c.settings_->http2.max_empty_frames) {
        c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, "empty frame flood");
      }
      return 0;
    }
    switch (hd->type) {
      case NGHTTP2_PING:
      case NGHTTP2_SETTINGS:
        if ((hd->flags & NGHTTP2_FLAG_ACK) != 0) return 0;
        [[fallthrough]];
      case NGHTTP2_PRIORITY:
      case NGHTTP2_WINDOW_UPDATE:
        if (!c.take_control_token()) c.terminate(NGHTTP2_ENHANCE_YOUR_CALM, "control frame flood");
        return 0;
      default:
        return 0;
    }
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                           size_t len, void*) {
    Stream* s = stream(session, id);
    if (s == nullptr) {
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    s->on_request_data({reinterpret_cast<const char*>(data), len});
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
    ServerConnection& c = conn(user);
    Stream* s = stream(c.session_, id);
    if (s == nullptr) return 0;
    s->on_closed(error_code);
    nghttp2_session_set_stream_user_data(c.session_, id, nullptr);
    c.unlink(s);
    delete s;
    c.arm_idle();
    return 0;
  }

  // A frame nghttp2 could not send: a response head too large to encode (past its 64 KiB
  // limit) would otherwise leave the client waiting on a stream that never answers.
  static int on_frame_not_send(nghttp2_session* session, const nghttp2_frame* frame, int,
                               void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = stream(session, frame->hd.stream_id);
    if (s == nullptr || s->closed_) return 0;
    if (StreamHandler* h = s->handler_) {
      s->handler_ = nullptr;
      h->on_reset("response head could not be sent (too large)", 0);
      h->on_complete();
    }
    s->reset_ = true;
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_INTERNAL_ERROR);
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    ServerConnection& c = conn(user);
    const auto& lim = c.settings_->http2;
    if (frame->hd.type == NGHTTP2_DATA && frame->hd.length > 0 &&
        c.control_tokens_ < lim.control_burst) {
      // The client's WINDOW_UPDATEs for it (one for the stream, one for the connection) are
      // not a flood.
      c.control_tokens_ = std::min<double>(lim.control_burst, c.control_tokens_ + 2);
    }
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      if (Stream* s = stream(session, frame->hd.stream_id)) s->on_sent_end();
    }
    return 0;
  }
};

// --- the connection ----------------------------------------------------------------------------

ServerConnection::ServerConnection(Transport& transport, const ConnectionInfo& info,
                                   std::shared_ptr<const ServerSettings> settings,
                                   core::EventLoop& loop, core::BlockPool& pool,
                                   StreamFactory& factory, ConnectionOwner& owner,
                                   std::string_view initial)
    : transport_(transport),
      info_(info),
      settings_(std::move(settings)),
      loop_(loop),
      pool_(pool),
      factory_(factory),
      owner_(owner),
      in_(&pool),
      out_(&pool),
      initial_(initial),
      idle_timer_(&ServerConnection::on_idle_timer, this),
      goaway_timer_(&ServerConnection::on_goaway_timer, this),
      nv_(std::make_unique<NvList>()) {}

ServerConnection::~ServerConnection() {
  loop_.timers().cancel(idle_timer_);
  loop_.timers().cancel(goaway_timer_);
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool ServerConnection::start() {
  if (!transport_.register_with(loop_, *this).ok()) return false;
  const auto& lim = settings_->http2;
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_option* opt = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, Callbacks::on_begin_frame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, Callbacks::on_frame_not_send);
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cb);
    return false;
  }
  nghttp2_option_set_no_auto_window_update(opt, 1);  // the window opens as handlers take data
  nghttp2_option_set_max_outbound_ack(opt, 1000);    // a client that never reads our ACKs
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_stream_reset_rate_limit(opt, lim.reset_burst, lim.reset_rate);
  nghttp2_option_set_max_continuations(opt, lim.max_continuations);
  nghttp2_option_set_no_closed_streams(opt, 1);
  int rv = nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_session_callbacks_del(cb);
  nghttp2_option_del(opt);
  if (rv != 0) return false;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim.stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, lim.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(settings_->limits.max_head_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(lim.connection_window));
  control_tokens_ = lim.control_burst;
  refilled_ms_ = loop_.now_ms();
  arm_idle();
  if (!initial_.empty()) {
    in_.append(initial_);
    std::string().swap(initial_);
  }
  loop_.schedule(this);  // the SETTINGS go out, the sniffed bytes are read, the socket is read
  read_pending_ = true;
  return true;
}

void ServerConnection::link(Stream* s) {
  s->next = head_;
  if (head_ != nullptr) head_->prev = s;
  head_ = s;
  ++streams_;
}

void ServerConnection::unlink(Stream* s) {
  if (s->prev != nullptr) s->prev->next = s->next;
  else head_ = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
  --streams_;
}

void ServerConnection::on_io(uint32_t events) {
  if (closed_) return;
  events = transport_.ready(events);
  if ((events & EPOLLERR) != 0) {
    close("socket error");
    return;
  }
  if ((events & EPOLLOUT) != 0 && !out_.empty()) flush();
  if (closed_) return;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) do_read();
  if (!closed_) send();
}

void ServerConnection::do_read() {
  if (closed_) return;
  if (read_paused_) {
    read_pending_ = true;
    return;
  }
  read_pending_ = false;
  for (int i = 0; i < kReadsPerTurn; ++i) {
    ReadResult r = ReadResult::kMore;
    if (in_.empty() || i > 0) r = transport_.read(in_, kReadChunk);
    if (!in_.empty()) {
      in_callback_ = true;
      ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in_.data()),
                                            in_.size());
      in_callback_ = false;
      in_.clear();
      if (closed_) return;
      if (rv < 0) {
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
          owner_.on_protocol_error(&info_, 400, "not an HTTP/2 connection preface");
          close("bad preface");
        } else {
          terminate(rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR,
                    nghttp2_strerror(static_cast<int>(rv)));
        }
        return;
      }
    }
    if (terminating_) return;  // nothing more is read; what is queued goes out
    switch (r) {
      case ReadResult::kDrained:
        if (in_.empty()) in_.release();
        return;
      case ReadResult::kMore:
        break;
      case ReadResult::kEof:
        close("peer closed");
        return;
      case ReadResult::kError:
        close("read error");
        return;
    }
    if (read_paused_) {  // the client does not read what we send: stop reading it
      read_pending_ = true;
      return;
    }
  }
  read_pending_ = true;  // more may be waiting: continue after the others had a turn
  loop_.schedule(this);
}

void ServerConnection::run_task() {
  if (closed_) return;
  for (Stream* s = head_; s != nullptr;) {
    Stream* next = s->next;
    if (s->needs_delivery_) s->deliver_held();
    s = next;
  }
  if (read_pending_ && !read_paused_) do_read();
  if (!closed_) send();
}

void ServerConnection::send() {
  if (closed_) return;
  if (in_callback_) {
    loop_.schedule(this);
    return;
  }
  for (int round = 0; round < 4; ++round) {
    while (out_.size() < settings_->high_watermark) {
      const uint8_t* data = nullptr;
      in_callback_ = true;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      in_callback_ = false;
      if (n < 0) {
        close(nghttp2_strerror(static_cast<int>(n)));
        return;
      }
      if (n == 0) break;
      out_.append(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
    }
    flush();
    if (closed_) return;
    // Streams whose buffers drained below the low watermark may produce again.
    bool woke = false;
    for (Stream* s = head_; s != nullptr;) {
      Stream* next = s->next;
      if (s->was_blocked_ && s->out_.size() <= settings_->low_watermark &&
          buffered_ <= buffer_budget() / 2) {
        s->was_blocked_ = false;  // blocked by the others' bytes, which have drained
        s->wants_write_ready_ = true;
      }
      if (s->wants_write_ready_ && s->handler_ != nullptr) {
        s->wants_write_ready_ = false;
        s->handler_->on_write_ready();
        woke = true;
      }
      s = next;
    }
    if (closed_) return;
    if (!woke) break;
  }
  if (out_.empty() && (terminating_ || (nghttp2_session_want_read(session_) == 0 &&
                                        nghttp2_session_want_write(session_) == 0))) {
    close(terminating_ ? "terminated" : "finished");
  }
}

void ServerConnection::flush() {
  while (!out_.empty()) {
    long n = transport_.write(out_.data(), out_.size());
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;  // the rest on the next EPOLLOUT
    close("write error");
    return;
  }
  if (out_.empty()) out_.release();
  if (out_.size() > settings_->high_watermark) {
    read_paused_ = true;
  } else if (read_paused_ && out_.size() <= settings_->low_watermark) {
    read_paused_ = false;
    if (read_pending_) loop_.schedule(this);
  }
}

void ServerConnection::terminate(uint32_t code, std::string_view why) {
  if (terminating_ || closed_) return;
  terminating_ = true;
  owner_.on_protocol_error(&info_, 0, why);  // 0: no HTTP answer, the connection ends
  nghttp2_session_terminate_session(session_, code);
  loop_.arm(idle_timer_, kTerminateLingerMs);  // a client that does not read gets closed anyway
  loop_.schedule(this);
}

void ServerConnection::arm_idle() {
  if (closed_ || terminating_) return;
  if (streams_ == 0) {
    // A new connection has the header timeout to send its preface and first request (as an
    // HTTP/1.1 connection has for its first head); an idle one the keep-alive timeout.
    loop_.arm(idle_timer_, draining_       ? kGoawayGraceMs
                           : !seen_stream_ ? settings_->header_timeout_ms
                                           : settings_->keepalive_timeout_ms);
    return;
  }
  for (Stream* s = head_; s != nullptr; s = s->next) {
    if (!s->head_done_) {
      loop_.arm(idle_timer_, settings_->header_timeout_ms);  // a head that never completes
      return;
    }
  }
  loop_.timers().cancel(idle_timer_);  // streams in progress: their own timeouts apply
}

void ServerConnection::on_idle_timer(void* self) {
  auto* c = static_cast<ServerConnection*>(self);
  if (c->terminating_ || c->streams_ > 0) {
    c->close(c->terminating_ ? "terminated" : "header timeout");
    return;
  }
  // Idle: say goodbye properly, then close once it is written.
  c->terminating_ = true;
  nghttp2_submit_goaway(c->session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(c->session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  c->loop_.arm(c->idle_timer_, kTerminateLingerMs);
  c->send();
}

void ServerConnection::close_when_idle() {
  if (closed_ || draining_) return;
  draining_ = true;
  // A notice first (the highest stream id: requests in flight are still taken), then after a
  // round trip's grace the GOAWAY that names the last stream served.
  nghttp2_submit_shutdown_notice(session_);
  loop_.arm(goaway_timer_, kGoawayGraceMs);
  arm_idle();
  loop_.schedule(this);
}

void ServerConnection::on_goaway_timer(void* self) {
  auto* c = static_cast<ServerConnection*>(self);
  if (c->closed_) return;
  nghttp2_submit_goaway(c->session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(c->session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  c->send();
}

bool ServerConnection::take_control_token() {
  refill(loop_.now_ms());
  if (control_tokens_ < 1) return false;
  control_tokens_ -= 1;
  return true;
}

void ServerConnection::refill(uint64_t now_ms) {
  if (now_ms <= refilled_ms_) return;
  const auto& lim = settings_->http2;
  double secs = static_cast<double>(now_ms - refilled_ms_) / 1000.0;
  refilled_ms_ = now_ms;
  control_tokens_ = std::min<double>(lim.control_burst, control_tokens_ + secs * lim.control_rate);
}

void ServerConnection::build_nv(const ResponseHead& head, bool informational) {
  NvList& nv = *nv_;
  nv.clear();
  char status[3] = {static_cast<char>('0' + head.status / 100 % 10),
                    static_cast<char>('0' + head.status / 10 % 10),
                    static_cast<char>('0' + head.status % 10)};
  nv.add(":status", std::string_view(status, 3), false);
  bool has_date = false;
  for (const auto& f : head.headers.fields()) {
    if (connection_specific(f.name) || f.name.empty() || f.name.front() == ':') continue;
    has_date = has_date || iequals(f.name, "date");
    nv.add(f.name, f.value);
  }
  if (!informational) {
    if (!has_date) nv.add("date", owner_.http_date(), false);
    if (head.framing == BodyFraming::kContentLength && head.status != 204 &&
        head.status != 304) {
      nv.add("content-length", std::to_string(head.content_length), false);
    }
  }
}

void ServerConnection::build_trailer_nv(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  nv_->clear();
  for (const auto& [n, v] : fields) nv_->add(n, v, false);
}

void ServerConnection::close(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  while (head_ != nullptr) {
    Stream* s = head_;
    unlink(s);
    if (StreamHandler* h = s->handler_) {
      s->handler_ = nullptr;
      if (!s->response_sent_) h->on_reset(reason, 0);
      h->on_complete();
    }
    if (session_ != nullptr) nghttp2_session_set_stream_user_data(session_, s->id_, nullptr);
    delete s;
  }
  loop_.timers().cancel(idle_timer_);
  loop_.timers().cancel(goaway_timer_);
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
  transport_.close(loop_);
  in_.release();
  out_.release();
  owner_.on_connection_closed(*this);  // hands us to defer_delete
}

}  // namespace citadel::http::http2
