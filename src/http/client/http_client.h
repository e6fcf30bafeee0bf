// An asynchronous HTTP/1.1 client for filters and services (JWKS fetches, OCSP, webhooks, purge
// fan-out): one per worker, on that worker's loop.
//
// A request names an absolute URL; the client resolves the host without blocking (resolver.h),
// takes a pooled keep-alive connection to that address or opens one, runs the exchange over the
// upstream seam (http/upstream.h, implemented by http1::ClientConnection) and hands back one
// ClientResponse: the status, the header fields and the body as owned copies, or an error that
// names its cause.
//
// Thread: the loop's thread only; the owner may destroy the client after the loop stopped (the
// loop itself must outlive it). Callbacks run on the loop, once per request, never from inside
// send() nor from inside another callback of the client: each is delivered from a loop task, so
// the caller's state is consistent and it may send again or cancel others from there.
// https URLs go over TLS with the options' context (the server's chain and name verified, SNI,
// sessions resumed); without a context they fail with kUnsupportedScheme.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/client/resolver.h"
#include "http/headers.h"
#include "http/http1/client_connection.h"
#include "http/transport/tls_context.h"

namespace citadel::http::client {

enum class ClientError : uint8_t {
  kNone,
  kInvalidUrl,         // the URL does not parse, or is not http(s)://host[:port]/...
  kUnsupportedScheme,  // https without a TLS context in the client's options
  kInvalidRequest,     // a method or header field that cannot be written as it is
  kResolveFailed,      // the name did not resolve (NXDOMAIN, no server answered, ...)
  kConnectFailed,      // no address of the host accepted a connection (or its TLS handshake)
  kTimeout,            // the whole exchange did not finish within the request's timeout
  kReset,              // the connection closed or failed before the response was complete
  kProtocolError,      // the response is not valid HTTP/1.1
  kBodyTooLarge,       // the response body passed the request's max_response_body
};

// "resolve_failed", ... for logs and metrics labels.
std::string_view error_name(ClientError e);

struct ClientRequest {
  std::string_view method = "GET";
  std::string_view url;  // http://host[:port]/path?query; IPv6 literals in brackets
  // Sent as given, after Host (taken from the URL unless set here) and before Content-Length
  // (the client's: Content-Length, Transfer-Encoding and Connection given here are refused).
  std::vector<HeaderField> headers;
  std::string_view body;  // sent with Content-Length (also when empty for POST, PUT, PATCH)
  // Resolution, connect, request and the whole response must fit in this (0: no limit).
  uint64_t timeout_ms = 5000;
  uint64_t max_response_body = 1 << 20;
};

struct ClientResponse {
  ClientError error = ClientError::kNone;
  std::string error_detail;  // what failed, for a log line
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // in arrival order
  std::string body;

  bool ok() const { return error == ClientError::kNone; }
  // The first value of `name` (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
};

// Called once with the outcome (unless cancelled). The response may be moved from.
using ResponseCallback = std::function<void(ClientResponse& response)>;

class Exchange;

// The caller's hold on one request. Cancel it, or destroy it, and no callback follows: a filter
// or handler keeps the handle as a member, so that when the stream ends (the filter is
// destroyed, in the stream's arena) its request goes with it and no late callback reaches
// freed memory. A fire-and-forget request (a webhook) calls detach(): it goes on, and its
// callback still runs. Movable, not copyable; loop thread only.
class RequestHandle {
 public:
  RequestHandle() = default;
  ~RequestHandle();
  RequestHandle(RequestHandle&& other) noexcept;
  RequestHandle& operator=(RequestHandle&& other) noexcept;
  RequestHandle(const RequestHandle&) = delete;
  RequestHandle& operator=(const RequestHandle&) = delete;

  // True until the callback has started or the request was cancelled.
  bool pending() const { return exchange_ != nullptr; }
  // Abandons the request: its connection is closed (never reused), no callback follows.
  void cancel();
  // Lets the request go on without this handle: the callback still runs once.
  void detach();

 private:
  friend class Exchange;
  friend class HttpClient;
  void bind(Exchange* e);
  Exchange* exchange_ = nullptr;
};

struct ClientOptions {
  ResolverOptions resolver;
  uint32_t max_idle_per_origin = 8;   // idle keep-alive connections kept per (host, port, address)
  uint64_t idle_timeout_ms = 30'000;  // an idle pooled connection closes after this
  // For https URLs (shared by every worker's client; the server builds one over the system's
  // CA store); nullptr: https is refused.
  std::shared_ptr<const TlsClientContext> tls;
};

class HttpClient final : public http::http1::ClientOwner {
 public:
  HttpClient(core::EventLoop& loop, core::BlockPool& blocks, const ClientOptions& options = {});
  // Cancels every request in flight (no callbacks) and closes every connection.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts `request` (every string is copied: nothing needs to outlive the call). `done` runs
  // once, later, from the loop, unless the handle is cancelled or destroyed first (detach() it
  // to let the request run on its own) or the client is destroyed.
  [[nodiscard]] RequestHandle send(const ClientRequest& request, ResponseCallback done);

  // Observability and tests.
  size_t in_flight() const { return in_flight_; }
  size_t idle_connections() const;
  uint64_t connections_opened() const { return connections_opened_; }
  Resolver& resolver() { return resolver_; }

  // http1::ClientOwner
  void on_client_idle(http::http1::ClientConnection& c) override;
  void on_client_closed(http::http1::ClientConnection& c) override;

 private:
  friend class Exchange;
  // Idle connections to one (host, port, address), most recently used last.
  struct Origin {
    std::string key;
    std::vector<http::http1::ClientConnection*> idle;
    uint32_t open = 0;  // connections of this origin, idle or not
  };
  // An idle connection of `key` (its idle timer stopped), or nullptr.
  http::http1::ClientConnection* take_idle(const std::string& key);
  // A new connection to `addr` counted under `key`, still connecting (over TLS to `host` when
  // `tls`: verified, and sent as SNI unless `host_is_ip`); nullptr (errno set) when no socket
  // could be made.
  http::http1::ClientConnection* connect(const std::string& key, const sockaddr* addr,
                                         socklen_t len, bool tls, const std::string& host,
                                         bool host_is_ip);
  void unlink(Exchange& e);

  core::EventLoop& loop_;
  core::BlockPool& blocks_;
  ClientOptions options_;
  Resolver resolver_;
  std::unordered_map<std::string, std::unique_ptr<Origin>> origins_;
  std::unordered_map<const http::http1::ClientConnection*, Origin*> origin_of_;
  Exchange* exchanges_ = nullptr;  // intrusive list of requests in flight
  size_t in_flight_ = 0;
  uint64_t connections_opened_ = 0;
  bool destroying_ = false;
};

}  // namespace citadel::http::client
