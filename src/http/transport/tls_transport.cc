#include "http/transport/tls_transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace citadel::http {

// Kept on the heap so that TlsInfo's views stay put when the transport moves into its codec.
struct TlsTransport::State {
  int fd = -1;
  SSL* ssl = nullptr;
  bool client = false;
  bool connecting = false;       // client: the TCP connect is still in progress
  bool handshaking = true;
  bool read_wants_write = false;  // a read waited for the socket to be writable
  bool write_wants_read = false;  // a write waited for the socket to be readable
  bool registered = false;
  bool shut = false;
  int error_code = 0;  // errno-style, for connect_error()
  ReadResult held = ReadResult::kMore;  // kError: reported by the next read (bytes came first)
  int held_errno = 0;
  std::string error;
  std::string sni, alpn, subject;
  TlsInfo info;

  ~State() {
    if (ssl != nullptr) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }
  // Records what the finished handshake chose, for ConnectionInfo.
  void learn() {
    if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) sni = name;
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    if (proto != nullptr) alpn.assign(reinterpret_cast<const char*>(proto), len);
    if (X509* peer = SSL_get0_peer_certificate(ssl)) {
      if (SSL_get_verify_result(ssl) == X509_V_OK) {
        BIO* bio = BIO_new(BIO_s_mem());
        if (bio != nullptr) {
          X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
          char* data = nullptr;
          long n = BIO_get_mem_data(bio, &data);
          if (n > 0) subject.assign(data, static_cast<size_t>(n));
          BIO_free(bio);
        }
      }
    }
    info.sni = sni;
    info.alpn = alpn;
    info.peer_subject = subject;
  }
};

TlsTransport::TlsTransport(std::unique_ptr<State> state) : s_(std::move(state)) {}
TlsTransport::TlsTransport(TlsTransport&& other) noexcept = default;
TlsTransport::~TlsTransport() = default;

TlsTransport TlsTransport::server(int fd, SSL* ssl) {
  auto s = std::make_unique<State>();
  s->fd = fd;
  s->ssl = ssl;
  SSL_set_fd(ssl, fd);
  SSL_set_accept_state(ssl);
  return TlsTransport(std::move(s));
}

TlsTransport TlsTransport::client(int fd, SSL* ssl) {
  auto s = std::make_unique<State>();
  s->fd = fd;
  s->ssl = ssl;
  s->client = true;
  s->connecting = true;
  SSL_set_fd(ssl, fd);
  SSL_set_connect_state(ssl);
  return TlsTransport(std::move(s));
}

int TlsTransport::fd() const { return s_->fd; }
const std::string& TlsTransport::error() const { return s_->error; }
const TlsInfo* TlsTransport::info() const { return &s_->info; }

void TlsTransport::fail_protocol(const char* what) {
  s_->error = tls_error_string(what);
  s_->error_code = EPROTO;
  errno = EPROTO;
}

TlsTransport::Handshake TlsTransport::handshake() {
  if (!s_->handshaking) return Handshake::kDone;
  ERR_clear_error();
  int r = SSL_do_handshake(s_->ssl);
  if (r == 1) {
    s_->handshaking = false;
    s_->learn();
    return Handshake::kDone;
  }
  int err = SSL_get_error(s_->ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Handshake::kWaiting;
  if (err == SSL_ERROR_SYSCALL && errno != 0) {
    s_->error = std::strerror(errno);
    s_->error_code = errno;
    ERR_clear_error();
  } else {
    fail_protocol(err == SSL_ERROR_SYSCALL ? "peer closed during the handshake"
                                           : "handshake failed");
    long verdict = SSL_get_verify_result(s_->ssl);
    if (s_->client && verdict != X509_V_OK) {
      // Say which check failed ("hostname mismatch", "unable to get local issuer certificate").
      s_->error += std::string(" (") + X509_verify_cert_error_string(verdict) + ")";
    }
  }
  return Handshake::kFailed;
}



core::Status TlsTransport::register_with(core::EventLoop& loop, core::IoHandler& handler) {
  core::Status st = s_->registered ? loop.rebind(s_->fd, &handler) : loop.add(s_->fd, &handler);
  s_->registered = st.ok();
  return st;
}

uint32_t TlsTransport::ready(uint32_t events) {
  State& s = *s_;
  if (s.client && s.handshaking) {
    // A client connection is ready for its codec once TCP and TLS are both up.
    if (s.connecting) {
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return 0;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        s.error = std::strerror(err);
        s.error_code = err;
        return EPOLLERR;
      }
      s.connecting = false;
    }
    switch (handshake()) {
      case Handshake::kDone: return EPOLLOUT | (events & (EPOLLIN | EPOLLRDHUP));
      case Handshake::kWaiting: return 0;
      case Handshake::kFailed: return EPOLLERR;
    }
  }
  uint32_t out = events;
  if (s.read_wants_write && (events & EPOLLOUT) != 0) {
    s.read_wants_write = false;
    out |= EPOLLIN;
  }
  if (s.write_wants_read && (events & EPOLLIN) != 0) {
    s.write_wants_read = false;
    out |= EPOLLOUT;
  }
  return out;
}

ReadResult TlsTransport::read_into(char* dst, size_t room, size_t& n) {
  State& s = *s_;
  n = 0;
  if (s.held != ReadResult::kMore) {  // an end found behind the last bytes
    errno = s.held_errno;
    return s.held;
  }
  // Read until the socket is drained or the room is full: a TLS record decoded into OpenSSL's
  // buffer would otherwise wait for an edge that never comes.
  while (n < room) {
    size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(s.ssl, dst + n, room - n, &got) == 1) {
      n += got;
      continue;
    }
    ReadResult end;
    switch (SSL_get_error(s.ssl, 0)) {
      case SSL_ERROR_WANT_READ:
        return ReadResult::kDrained;
      case SSL_ERROR_WANT_WRITE:
        s.read_wants_write = true;
        return ReadResult::kDrained;
      case SSL_ERROR_ZERO_RETURN:
        return ReadResult::kEof;  // close_notify, or (ignored) a close without one
      case SSL_ERROR_SYSCALL:
        if (errno == 0) errno = ECONNRESET;
        if (s.error.empty()) s.error = std::strerror(errno);
        ERR_clear_error();
        end = ReadResult::kError;
        break;
      default:
        fail_protocol("TLS read failed");
        end = ReadResult::kError;
        break;
    }
    if (n == 0) return end;
    // Bytes decoded before the failure are valid: deliver them first (kMore makes the codec
    // read again, and that read reports the failure).
    s.held = end;
    s.held_errno = errno;
    return ReadResult::kMore;
  }
  return ReadResult::kMore;
}

long TlsTransport::write(const char* data, size_t len) {
  State& s = *s_;
  size_t written = 0;
  ERR_clear_error();
  if (SSL_write_ex(s.ssl, data, len, &written) == 1) return static_cast<long>(written);
  switch (SSL_get_error(s.ssl, 0)) {
    case SSL_ERROR_WANT_WRITE:
      return 0;
    case SSL_ERROR_WANT_READ:
      s.write_wants_read = true;
      return 0;
    case SSL_ERROR_SYSCALL:
      if (errno == 0) errno = EPIPE;
      ERR_clear_error();
      return -1;
    default:
      fail_protocol("TLS write failed");
      return -1;
  }
}

long TlsTransport::writev(std::string_view a, std::string_view b) {
  // One record for a head and a small body (one packet, one encryption), two otherwise.
  constexpr size_t kCoalesce = 16384;
  if (!b.empty() && a.size() + b.size() <= kCoalesce) {
    char buf[kCoalesce];
    std::memcpy(buf, a.data(), a.size());
    std::memcpy(buf + a.size(), b.data(), b.size());
    return write(buf, a.size() + b.size());
  }
  long r = write(a.data(), a.size());
  if (r <= 0 || static_cast<size_t>(r) < a.size() || b.empty()) return r;
  long r2 = write(b.data(), b.size());
  return r2 < 0 ? r : r + r2;  // the error shows again on the next call
}

void TlsTransport::shutdown_write() {
  State& s = *s_;
  if (s.shut || s.fd < 0) return;
  s.shut = true;
  ERR_clear_error();
  if (!s.handshaking) SSL_shutdown(s.ssl);  // close_notify; the peer's is not awaited
  ERR_clear_error();
  ::shutdown(s.fd, SHUT_WR);
}

void TlsTransport::close(core::EventLoop& loop) {
  if (!s_ || s_->fd < 0) return;
  if (s_->registered) loop.remove(s_->fd);
  s_->registered = false;
  // A connection closed without a TLS failure ended well, close_notify or not: OpenSSL would
  // otherwise drop its session from the caches (ours and the server's) as a bad one.
  if (s_->error_code != EPROTO && !s_->handshaking) {
    SSL_set_shutdown(s_->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  SSL_free(s_->ssl);
  s_->ssl = nullptr;
  ::close(s_->fd);
  s_->fd = -1;
}

int TlsTransport::connect_error() { return s_->error_code; }
std::string_view TlsTransport::failure_detail() const { return s_->error; }

// --- the server handshake ----------------------------------------------------------------------

TlsHandshake::TlsHandshake(TlsTransport transport, const ConnectionInfo& info,
                           core::EventLoop& loop, ConnectionOwner& owner, TlsHandshakeOwner& done,
                           uint64_t timeout_ms)
    : transport_(std::move(transport)), info_(info), loop_(loop), owner_(owner), done_(done),
      timeout_ms_(timeout_ms), timer_(&TlsHandshake::on_timeout, this) {
  info_.tls = true;
  info_.tls_info = transport_.info();
}

TlsHandshake::~TlsHandshake() { loop_.timers().cancel(timer_); }

bool TlsHandshake::start() {
  if (!transport_.register_with(loop_, *this).ok()) return false;
  if (timeout_ms_ > 0) loop_.arm(timer_, timeout_ms_);
  return true;
}

void TlsHandshake::on_io(uint32_t events) {
  if (closed_ || taken_) return;
  switch (transport_.handshake()) {
    case TlsTransport::Handshake::kDone:
      loop_.timers().cancel(timer_);
      done_.on_handshake_done(*this);
      return;
    case TlsTransport::Handshake::kWaiting:
      if ((events & (EPOLLERR | EPOLLHUP)) != 0) close("connection lost during the handshake");
      return;
    case TlsTransport::Handshake::kFailed:
      close(transport_.error());
      return;
  }
}

TlsTransport TlsHandshake::take_transport() {
  taken_ = true;
  return std::move(transport_);  // still registered for us: the codec rebinds it
}

void TlsHandshake::on_timeout(void* self) {
  static_cast<TlsHandshake*>(self)->close("handshake timeout");
}

void TlsHandshake::abort() { close("aborted"); }

void TlsHandshake::close(std::string_view why) {
  if (closed_ || taken_) return;
  closed_ = true;
  if (why != "aborted") done_.on_handshake_failed(why);
  loop_.timers().cancel(timer_);
  transport_.close(loop_);
  owner_.on_connection_closed(*this);  // hands us to defer_delete
}

}  // namespace citadel::http
