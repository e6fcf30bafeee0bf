#include "http/client/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/arena.h"
#include "http/client/url.h"
#include "http/http1/parser.h"
#include "http/message.h"
#include "http/upstream.h"

namespace citadel::http::client {
namespace {

using http::http1::is_token;

// RFC 9110 9.2.2: a request that may be repeated without changing the outcome.
bool idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

// Framing and connection management are the client's: a caller's value would desynchronise the
// connection or keep it from the pool.
bool client_owned_field(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
         iequals(name, "connection") || iequals(name, "upgrade") || iequals(name, "keep-alive") ||
         iequals(name, "te");
}

std::string address_text(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  }
  return buf;
}

void set_port(ResolvedAddress& a, uint16_t port) {
  if (a.addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in&>(a.addr).sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6&>(a.addr).sin6_port = htons(port);
  }
}

}  // namespace

std::string_view error_name(ClientError e) {
  switch (e) {
    case ClientError::kNone:
      return "none";
    case ClientError::kInvalidUrl:
      return "invalid_url";
    case ClientError::kUnsupportedScheme:
      return "unsupported_scheme";
    case ClientError::kInvalidRequest:
      return "invalid_request";
    case ClientError::kResolveFailed:
      return "resolve_failed";
    case ClientError::kConnectFailed:
      return "connect_failed";
    case ClientError::kTimeout:
      return "timeout";
    case ClientError::kReset:
      return "reset";
    case ClientError::kProtocolError:
      return "protocol_error";
    case ClientError::kBodyTooLarge:
      return "body_too_large";
  }
  return "unknown";
}

const std::string* ClientResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return &v;
  }
  return nullptr;
}

// One request from send() to its callback. Owned by the client's list while in flight; freed
// through the loop's graveyard (a scheduled task or a connection callback may still name it).
//
// Steps, each from the loop: start (a task: parse results, then resolve or use the IP literal)
// -> on_resolved -> try_connect (a pooled connection, else a new one; the next address when a
// connect fails) -> the exchange over the UpstreamStream -> finish (the outcome recorded, the
// connection released) -> deliver (a task: the callback).
class Exchange final : public http::UpstreamCallbacks,
                       public core::LoopTask,
                       public core::Deferred,
                       public ResolveWaiter {
 public:
  Exchange(HttpClient& client, const ClientRequest& req, ResponseCallback done)
      : client_(client),
        loop_(client.loop_),
        deadline_(&Exchange::on_deadline, this),
        done_(std::move(done)) {
    method_ = std::string(req.method);
    body_ = std::string(req.body);
    max_body_ = req.max_response_body;
    timeout_ms_ = req.timeout_ms;
    idempotent_ = idempotent(method_);
    auto parsed = parse_url(req.url);
    if (!parsed.ok()) {
      early(ClientError::kInvalidUrl, parsed.error().message());
      return;
    }
    url_ = std::move(parsed.value());
    if (url_.https && client_.options_.tls == nullptr) {
      early(ClientError::kUnsupportedScheme, "https needs a TLS context (none configured)");
      return;
    }
    if (!is_token(method_)) {
      early(ClientError::kInvalidRequest, "invalid method");
      return;
    }
    bool has_host = false;
    fields_.reserve(req.headers.size());
    for (const auto& f : req.headers) {
      if (!is_token(f.name) || !safe_field_value(f.value)) {
        early(ClientError::kInvalidRequest, "invalid header field " + std::string(f.name));
        return;
      }
      if (client_owned_field(f.name)) {
        early(ClientError::kInvalidRequest,
              "header field " + std::string(f.name) + " is set by the client");
        return;
      }
      if (iequals(f.name, "host")) has_host = true;
      fields_.emplace_back(std::string(f.name), std::string(f.value));
    }
    // The head's views point into fields_ and url_, which stay as they are from here on.
    head_out_.method = method_;
    head_out_.is_head = method_ == "HEAD";
    if (!has_host) head_out_.headers.add("Host", url_.authority);
    for (const auto& [n, v] : fields_) head_out_.headers.add(n, v);
    if (!body_.empty() || method_ == "POST" || method_ == "PUT" || method_ == "PATCH") {
      head_out_.framing = BodyFraming::kContentLength;
      head_out_.content_length = body_.size();
    }
  }

  ~Exchange() override { loop_.timers().cancel(deadline_); }

  void start() {
    if (timeout_ms_ > 0 && state_ == State::kStart) loop_.arm(deadline_, timeout_ms_);
    loop_.schedule(this);
  }

  // The caller cancelled, or the client is going: nothing more is said to anyone.
  void cancel() {
    if (state_ == State::kFinished) return;
    state_ = State::kFinished;
    release();
    client_.unlink(*this);
    if (handle_ != nullptr) handle_->exchange_ = nullptr;
    handle_ = nullptr;
    done_ = nullptr;
    loop_.defer_delete(std::unique_ptr<core::Deferred>(this));
  }

  void run_task() override {
    if (state_ == State::kStart) {
      begin();
    } else if (state_ == State::kDone) {
      deliver();
    }
  }

  // ResolveWaiter
  void on_resolved(const std::vector<ResolvedAddress>& addresses, std::string_view error) override {
    if (state_ != State::kResolving) return;
    if (!error.empty()) {
      finish(ClientError::kResolveFailed, url_.host + ": " + std::string(error));
      return;
    }
    addresses_ = addresses;
    for (auto& a : addresses_) set_port(a, url_.port);
    next_address_ = 0;
    try_connect(false);
  }

  // UpstreamCallbacks
  ResponseHead& response_head() override { return head_in_; }
  core::Arena& arena() override { return arena_; }
  void on_connected() override {}
  void on_informational(const ResponseHead&) override {}
  void on_response_headers(bool end_stream) override {
    if (state_ != State::kExchanging) return;
    got_head_ = true;
    if (head_in_.status == 101) {
      abort(ClientError::kProtocolError, "unexpected 101 Switching Protocols");
      return;
    }
    response_.status = head_in_.status;
    response_.headers.reserve(head_in_.headers.size());
    for (const auto& f : head_in_.headers.fields()) {
      response_.headers.emplace_back(std::string(f.name), std::string(f.value));
    }
    if (head_in_.framing == BodyFraming::kContentLength && head_in_.content_length > max_body_) {
      abort(ClientError::kBodyTooLarge, "Content-Length " +
                                            std::to_string(head_in_.content_length) + " exceeds " +
                                            std::to_string(max_body_));
      return;
    }
    if (end_stream) complete();
  }
  void on_response_data(std::string_view data, bool end_stream) override {
    if (state_ != State::kExchanging) return;
    if (data.size() > max_body_ - response_.body.size()) {
      abort(ClientError::kBodyTooLarge,
            "response body exceeds " + std::to_string(max_body_) + " bytes");
      return;
    }
    response_.body.append(data);
    if (end_stream) complete();
  }
  void on_response_trailers(const HeaderMap&) override {
    if (state_ == State::kExchanging) complete();
  }
  void on_upstream_write_ready() override {}
  void on_failure(UpstreamFailure kind, std::string_view detail) override {
    stream_ = nullptr;  // it closed itself
    if (state_ != State::kExchanging) return;
    switch (kind) {
      case UpstreamFailure::kConnectFailure:
        last_error_ = std::string(detail);
        ++next_address_;
        try_connect(false);
        return;
      case UpstreamFailure::kReset:
        // A pooled connection the server closed as we reused it: the request may never have
        // been seen. Repeat it once, on a new connection, when repeating cannot do harm.
        if (reused_ && !retried_ && !got_head_ && idempotent_) {
          retried_ = true;
          try_connect(true);
          return;
        }
        finish(ClientError::kReset, std::string(detail));
        return;
      case UpstreamFailure::kResetAfterHead:
        finish(ClientError::kReset, std::string(detail));
        return;
      case UpstreamFailure::kProtocolError:
        finish(ClientError::kProtocolError, std::string(detail));
        return;
      case UpstreamFailure::kRequestFraming:
        finish(ClientError::kInvalidRequest, std::string(detail));
        return;
    }
  }

  Exchange* prev = nullptr;
  Exchange* next = nullptr;
  RequestHandle* handle_ = nullptr;

 private:
  enum class State : uint8_t { kStart, kResolving, kExchanging, kDone, kFinished };

  void early(ClientError e, std::string detail) {
    early_error_ = e;
    response_.error_detail = std::move(detail);
  }

  void begin() {
    if (early_error_ != ClientError::kNone) {
      finish(early_error_, std::move(response_.error_detail));
      return;
    }
    if (url_.host_is_ip) {
      ResolvedAddress a;
      if (url_.host.find(':') != std::string::npos) {
        auto& in6 = reinterpret_cast<sockaddr_in6&>(a.addr);
        in6.sin6_family = AF_INET6;
        a.len = sizeof in6;
        if (inet_pton(AF_INET6, url_.host.c_str(), &in6.sin6_addr) != 1) a.len = 0;
      } else {
        auto& in4 = reinterpret_cast<sockaddr_in&>(a.addr);
        in4.sin_family = AF_INET;
        a.len = sizeof in4;
        if (inet_pton(AF_INET, url_.host.c_str(), &in4.sin_addr) != 1) a.len = 0;
      }
      if (a.len == 0) {
        finish(ClientError::kInvalidUrl, "unusable address " + url_.host);
        return;
      }
      state_ = State::kResolving;
      on_resolved({a}, {});
      return;
    }
    state_ = State::kResolving;
    client_.resolver_.resolve(url_.host, *this);  // may answer from in here
  }

  // Starts the exchange on a connection to addresses_[next_address_] or a later one. `fresh`:
  // never a pooled connection (the retry after a pooled one failed).
  void try_connect(bool fresh) {
    state_ = State::kExchanging;
    for (; next_address_ < addresses_.size(); ++next_address_) {
      const ResolvedAddress& a = addresses_[next_address_];
      key_ = (url_.https ? "https://" : "http://") + url_.host + ":" +
             std::to_string(url_.port) + "@" + address_text(a.addr);
      http::http1::ClientConnection* c = fresh ? nullptr : client_.take_idle(key_);
      reused_ = c != nullptr;
      if (c == nullptr) {
        c = client_.connect(key_, reinterpret_cast<const sockaddr*>(&a.addr), a.len, url_.https,
                            url_.host, url_.host_is_ip);
        if (c == nullptr) {
          last_error_ = std::strerror(errno);
          continue;
        }
      }
      got_head_ = false;
      stream_ = c;
      c->attach(this);
      c->send_head(head_out_, url_.target);
      if (head_out_.framing == BodyFraming::kContentLength) c->send_data(body_, true);
      return;
    }
    finish(ClientError::kConnectFailed, url_.authority + ": " + last_error_);
  }

  // The response ended; the connection has already gone back to the pool (or closed).
  void complete() {
    stream_ = nullptr;
    finish(ClientError::kNone, {});
  }

  // Ends the exchange now, closing its connection (never reused).
  void abort(ClientError e, std::string detail) { finish(e, std::move(detail)); }

  void release() {
    loop_.timers().cancel(deadline_);
    client_.resolver_.cancel(*this);
    if (stream_ != nullptr) {
      http::UpstreamStream* s = stream_;
      stream_ = nullptr;
      s->detach();
      s->close();
    }
  }

  // Records the outcome; the callback follows from a task.
  void finish(ClientError e, std::string detail) {
    if (state_ == State::kDone || state_ == State::kFinished) return;
    state_ = State::kDone;
    response_.error = e;
    response_.error_detail = std::move(detail);
    release();
    loop_.schedule(this);
  }

  void deliver() {
    state_ = State::kFinished;
    client_.unlink(*this);
    if (handle_ != nullptr) handle_->exchange_ = nullptr;
    handle_ = nullptr;
    // Ours until the end of this batch whatever the callback does (even destroy the client).
    loop_.defer_delete(std::unique_ptr<core::Deferred>(this));
    ResponseCallback done = std::move(done_);
    done_ = nullptr;
    if (done) done(response_);
  }

  static void on_deadline(void* self) {
    auto* e = static_cast<Exchange*>(self);
    e->abort(ClientError::kTimeout, "no response within " + std::to_string(e->timeout_ms_) + " ms");
  }

  HttpClient& client_;
  core::EventLoop& loop_;
  core::Timer deadline_;
  ResponseCallback done_;
  State state_ = State::kStart;
  ClientError early_error_ = ClientError::kNone;
  std::string method_;
  Url url_;
  std::vector<std::pair<std::string, std::string>> fields_;
  std::string body_;
  uint64_t max_body_ = 0;
  uint64_t timeout_ms_ = 0;
  bool idempotent_ = false;
  RequestHead head_out_;
  std::vector<ResolvedAddress> addresses_;
  size_t next_address_ = 0;
  std::string key_;
  std::string last_error_ = "no address";
  http::UpstreamStream* stream_ = nullptr;
  bool reused_ = false;
  bool retried_ = false;
  bool got_head_ = false;
  ResponseHead head_in_;
  core::Arena arena_{1024};
  ClientResponse response_;
};

RequestHandle::~RequestHandle() { cancel(); }

RequestHandle::RequestHandle(RequestHandle&& other) noexcept {
  Exchange* e = other.exchange_;
  other.exchange_ = nullptr;  // or its destructor would unbind the exchange from us
  bind(e);
}

RequestHandle& RequestHandle::operator=(RequestHandle&& other) noexcept {
  if (this != &other) {
    cancel();  // the request this handle held goes, as when the handle is destroyed
    Exchange* e = other.exchange_;
    other.exchange_ = nullptr;
    bind(e);
  }
  return *this;
}

void RequestHandle::bind(Exchange* e) {
  exchange_ = e;
  if (e != nullptr) e->handle_ = this;
}

void RequestHandle::detach() {
  if (exchange_ != nullptr) exchange_->handle_ = nullptr;
  exchange_ = nullptr;
}

void RequestHandle::cancel() {
  Exchange* e = exchange_;
  if (e == nullptr) return;
  exchange_ = nullptr;
  e->handle_ = nullptr;
  e->cancel();
}

HttpClient::HttpClient(core::EventLoop& loop, core::BlockPool& blocks, const ClientOptions& options)
    : loop_(loop), blocks_(blocks), options_(options), resolver_(loop, options.resolver) {}

HttpClient::~HttpClient() {
  destroying_ = true;
  while (exchanges_ != nullptr) exchanges_->cancel();
  // Closing reports back through on_client_closed, which edits the lists: work on copies.
  std::vector<http::http1::ClientConnection*> idle;
  for (auto& [_, o] : origins_) idle.insert(idle.end(), o->idle.begin(), o->idle.end());
  for (auto* c : idle) c->close();
}

RequestHandle HttpClient::send(const ClientRequest& request, ResponseCallback done) {
  auto* e = new Exchange(*this, request, std::move(done));
  e->next = exchanges_;
  if (exchanges_ != nullptr) exchanges_->prev = e;
  exchanges_ = e;
  ++in_flight_;
  e->start();
  RequestHandle h;
  h.bind(e);
  return h;
}

void HttpClient::unlink(Exchange& e) {
  if (e.prev != nullptr) {
    e.prev->next = e.next;
  } else {
    exchanges_ = e.next;
  }
  if (e.next != nullptr) e.next->prev = e.prev;
  e.prev = e.next = nullptr;
  --in_flight_;
}

size_t HttpClient::idle_connections() const {
  size_t n = 0;
  for (const auto& [_, o] : origins_) n += o->idle.size();
  return n;
}

http::http1::ClientConnection* HttpClient::take_idle(const std::string& key) {
  auto it = origins_.find(key);
  if (it == origins_.end()) return nullptr;
  auto& idle = it->second->idle;
  while (!idle.empty()) {
    auto* c = idle.back();
    idle.pop_back();
    loop_.timers().cancel(c->idle_timer);
    if (!c->closed()) return c;
  }
  return nullptr;
}

http::http1::ClientConnection* HttpClient::connect(const std::string& key, const sockaddr* addr,
                                                   socklen_t len, bool tls,
                                                   const std::string& host, bool host_is_ip) {
  http::http1::ClientConnection* c = nullptr;
  if (tls) {
    // The name is verified (an IP literal against the certificate's addresses) and sent as SNI
    // unless it is an address; sessions resume per origin and address.
    SSL* ssl = options_.tls->new_ssl(host, host_is_ip ? std::string_view() : std::string_view(host),
                                     key);
    if (ssl == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    c = http::http1::connect_tls(addr, len, ssl, loop_, blocks_, *this);
  } else {
    c = http::http1::connect_plain(addr, len, loop_, blocks_, *this);
  }
  if (c == nullptr) return nullptr;
  auto& o = origins_[key];
  if (o == nullptr) {
    o = std::make_unique<Origin>();
    o->key = key;
  }
  ++o->open;
  origin_of_[c] = o.get();
  ++connections_opened_;
  return c;
}

void HttpClient::on_client_idle(http::http1::ClientConnection& c) {
  auto it = origin_of_.find(&c);
  if (destroying_ || it == origin_of_.end() ||
      it->second->idle.size() >= options_.max_idle_per_origin) {
    c.close();
    return;
  }
  it->second->idle.push_back(&c);
  loop_.arm(c.idle_timer, options_.idle_timeout_ms);
}

void HttpClient::on_client_closed(http::http1::ClientConnection& c) {
  auto it = origin_of_.find(&c);
  if (it != origin_of_.end()) {
    Origin* o = it->second;
    origin_of_.erase(it);
    auto pos = std::find(o->idle.begin(), o->idle.end(), &c);
    if (pos != o->idle.end()) o->idle.erase(pos);
    if (--o->open == 0) {
      std::string key = o->key;  // not a view into the entry being erased
      origins_.erase(key);
    }
  }
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
}

}  // namespace citadel::http::client
