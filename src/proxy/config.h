// The validated configuration model: what the YAML file says, as plain values.
//
// Built by load_config() on the control thread; immutable afterwards. The runtime snapshot
// (snapshot.h) is compiled from it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config_reader.h"
#include "http/path.h"
#include "http/server_settings.h"
#include "http/transport/tls_context.h"

namespace citadel::proxy {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string text() const { return host.find(':') != std::string::npos
                                        ? "[" + host + "]:" + std::to_string(port)
                                        : host + ":" + std::to_string(port); }
};

struct ServerTimeouts {
  uint64_t header_ms = 10'000;     // whole request head must arrive within this: 408
  uint64_t body_idle_ms = 30'000;  // no request body byte for this long: 408
  uint64_t keepalive_ms = 60'000;  // idle keep-alive connection closed
  uint64_t request_ms = 0;         // whole request, 0 = unlimited: 408 / 504
};

struct ServerLimits {
  uint64_t request_line = 8 * 1024;
  uint64_t header_count = 100;
  uint64_t header_bytes = 32 * 1024;
  uint64_t body = 16ull << 20;  // per request; routes may override
  uint64_t connections = 0;     // open client connections; 0: no limit but file descriptors
};

// One entry of a `filters:` list: the filter's name and its raw options, parsed by the filter.
struct FilterEntry {
  std::string name;
  YAML::Node options;
  std::string path;  // for errors
  int line = 0;
};

// `tls.acme`: certificates obtained and renewed from an ACME server (RFC 8555) for `domains`,
// kept under `store.data_dir`/acme (cli/acme_client.h).
enum class AcmeChallenge : uint8_t { kAuto, kHttp01, kTlsAlpn01 };
struct AcmeConfig {
  std::string directory;  // the server's directory URL (https)
  std::string email;      // the account's contact; empty: none
  std::vector<std::string> domains;  // lowercase; the first names the certificate
  std::string ca;  // PEM bundle the directory's TLS certificate must chain to; empty: system's
  // auto: HTTP-01 when the config has a plain listener (validation comes to port 80 there),
  // else TLS-ALPN-01 on this listener.
  AcmeChallenge challenge = AcmeChallenge::kAuto;
  uint64_t renew_before_s = 0;  // renew when this much validity is left; 0: a third of it
  uint64_t retry_ms = 60'000;   // the first retry after a failure; doubles up to a day
  int line = 0;
  // What names the certificate in the ACME state (proxy::AcmeState): the server and the first
  // domain, so that a block pointed at another server never serves the old server's certificate.
  std::string key() const { return directory + "\n" + domains.front(); }
  bool operator==(const AcmeConfig& o) const {
    return directory == o.directory && email == o.email && domains == o.domains && ca == o.ca &&
           challenge == o.challenge && renew_before_s == o.renew_before_s &&
           retry_ms == o.retry_ms;
  }
};

// A TLS listener's `tls:` block. File names are as written in the config, resolved against the
// config file's directory.
struct ListenerTlsConfig {
  std::optional<AcmeConfig> acme;
  std::vector<http::TlsCertificateFiles> certificates;
  bool tls13_only = false;  // min_version: "1.3"
  http::ClientAuth client_auth = http::ClientAuth::kNone;
  std::string client_ca;
  // client_auth.forward_subject: the request field that carries the verified client
  // certificate's subject to the target (a field of that name from the client is removed).
  std::string forward_subject;
  bool session_tickets = true;
  long session_cache = 20480;
  // hsts: Strict-Transport-Security on every response of this listener; 0: none.
  uint64_t hsts_max_age_s = 0;
  bool hsts_subdomains = false;
  bool hsts_preload = false;
  int line = 0;
};

struct ListenerConfig {
  std::string name;
  HostPort address;
  ServerTimeouts timeouts;
  ServerLimits limits;
  bool merge_slashes = true;
  // `escaped_slashes` and `forward_path` (see http::PathNormalizeOptions).
  http::EscapedSlashes escaped_slashes = http::EscapedSlashes::kReject;
  bool forward_normalized = true;
  // Filters every request of this listener runs before it is routed (then the route's).
  std::vector<FilterEntry> filters;
  std::optional<ListenerTlsConfig> tls;
  // redirect_to_https: every request on this (plain) listener is redirected to https on this
  // port (443: no port in the URL); 0: off.
  uint16_t redirect_to_https = 0;
  // http2: HTTP/2 as well as HTTP/1.1 (ALPN h2 on a TLS listener, h2c with prior knowledge on
  // a plain one), with these limits.
  bool http2 = false;
  http::Http2Limits http2_limits;
  int line = 0;
};

struct HealthCheckConfig {
  bool enabled = false;
  std::string path = "/healthz";
  std::string host;  // Host header; default: the endpoint address
  uint64_t interval_ms = 5000;
  uint64_t timeout_ms = 1000;
  uint32_t healthy = 2;
  uint32_t unhealthy = 2;
  std::vector<std::pair<int, int>> expected = {{200, 399}};
  // grpc: the gRPC health protocol (grpc.health.v1.Health/Check for grpc_service) instead of
  // a GET of `path`; needs protocol: h2.
  bool grpc = false;
  std::string grpc_service;
};

struct OutlierConfig {
  bool enabled = false;
  uint32_t consecutive_failures = 5;
  uint64_t base_ejection_ms = 10'000;
  uint64_t max_ejection_ms = 300'000;
  uint32_t max_ejection_percent = 50;
};

struct RetryConfig {
  uint32_t attempts = 0;  // extra tries after the first
  bool on_connect_failure = false;
  bool on_reset = false;
  std::vector<int> statuses;
  uint32_t budget_percent = 20;   // retries in flight at most this share of active requests
  uint32_t min_retry_concurrency = 3;
  uint64_t backoff_base_ms = 25;
  uint64_t backoff_max_ms = 250;
};

struct UpstreamTimeouts {
  uint64_t connect_ms = 1000;
  uint64_t response_ms = 15'000;  // request sent to first response byte
  uint64_t idle_ms = 60'000;      // no byte either way while streaming
};

struct PoolConfig {
  uint32_t max_idle = 128;  // per endpoint per worker
  uint64_t idle_timeout_ms = 60'000;
};

// Envoy's circuit-breaker thresholds, for the whole process; each worker enforces its share
// (the limit divided by the workers, rounded up).
struct ClusterLimits {
  uint32_t max_connections = 1024;  // open (and opening) upstream connections
  uint32_t max_pending = 1024;      // requests waiting for a connection
  uint32_t max_requests = 1024;     // requests in flight to the cluster
};

enum class LbPolicy { kRoundRobin, kLeastRequest, kWeighted, kConsistentHash };

struct HashPolicy {
  enum Kind { kSourceIp, kHeader, kCookie } kind = kSourceIp;
  std::string name;
};

// Which addresses of a DNS name become endpoints: IPv4 ones when there are any, else IPv6
// (default); only IPv4; only IPv6; all of them.
enum class DnsFamily { kV4Preferred, kV4, kV6, kAll };

struct EndpointConfig {
  HostPort address;
  uint32_t weight = 1;
};

// A cluster's `tls:` block: its endpoints are reached over TLS. File names are resolved against
// the config file's directory.
struct UpstreamTlsConfig {
  std::string ca;       // PEM bundle; empty: the system's CA store
  bool verify = true;   // verify the chain and the name (sni, else the endpoint's host)
  std::string sni;      // the server name sent and verified; empty: the endpoint's host name
  std::string cert;     // optional client certificate and key (mutual TLS to the upstream)
  std::string key;
  bool tls13_only = false;
  int line = 0;
};

// What a TLS client context for such a cluster is built from.
inline http::TlsClientOptions upstream_tls_options(const UpstreamTlsConfig& t, bool h2 = false) {
  http::TlsClientOptions o;
  o.ca = t.ca;
  o.verify = t.verify;
  o.cert = t.cert;
  o.key = t.key;
  o.tls13_only = t.tls13_only;
  o.alpn = {h2 ? "h2" : "http/1.1"};
  return o;
}

struct ClusterConfig {
  std::string name;
  LbPolicy lb = LbPolicy::kRoundRobin;
  HashPolicy hash;
  std::vector<EndpointConfig> endpoints;
  uint64_t dns_refresh_ms = 30'000;
  DnsFamily dns_family = DnsFamily::kV4Preferred;
  HealthCheckConfig health;
  OutlierConfig outlier;
  RetryConfig retry;
  UpstreamTimeouts timeouts;
  PoolConfig pool;
  ClusterLimits limits;
  uint32_t panic_threshold_percent = 50;
  std::optional<UpstreamTlsConfig> tls;
  // protocol: h2 speaks HTTP/2 to the endpoints (ALPN h2 over TLS, else h2c with prior
  // knowledge), many requests per connection.
  bool h2 = false;
  int line = 0;

  // Identity for reuse across reloads: a cluster whose text is unchanged keeps its health state.
  std::string fingerprint;
};

struct HeaderMatch {
  std::string name;
  enum Kind { kPresent, kAbsent, kExact, kRegex } kind = kPresent;
  std::string value;
};

struct RouteMatchConfig {
  std::vector<std::string> hosts;  // exact "a.example.com" or "*.example.com"; empty = any
  enum PathKind { kAny, kExact, kPrefix, kRegex } path_kind = kAny;
  std::string path;
  std::vector<std::string> methods;
  std::vector<HeaderMatch> headers;
};

struct RewriteConfig {
  std::optional<std::string> strip_prefix;
  std::optional<std::pair<std::string, std::string>> replace_prefix;  // from, to
  std::optional<std::pair<std::string, std::string>> regex;           // pattern, substitution
  std::string re2_substitution;  // regex's substitution in RE2's syntax (`\1`), set at load
  std::optional<std::string> host;
};

struct RespondConfig {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
};

struct RedirectConfig {
  int status = 302;
  std::string url;           // full URL; or compose from the parts below
  std::string scheme;
  std::string host;
  std::string path;
  bool keep_query = true;
};


struct RouteConfig {
  std::string name;
  RouteMatchConfig match;
  std::vector<FilterEntry> filters;
  RewriteConfig rewrite;
  enum TargetKind { kCluster, kRespond, kRedirect, kService } target = kRespond;
  std::string cluster;
  std::string service;  // kService: the service's name (its options: Config::services)
  RespondConfig respond;
  RedirectConfig redirect;
  std::optional<uint64_t> max_body;
  uint64_t buffer_limit = 1 << 20;  // body bytes the filter chain may hold per direction
  std::optional<uint64_t> timeout_ms;
  // Upgrade protocols (lower-case tokens such as "websocket") forwarded on this route; any other
  // Upgrade is dropped and the request forwarded as a plain one. Never "h2c".
  std::vector<std::string> upgrades;
  int line = 0;
};

struct AccessLogConfig {
  bool enabled = true;
  std::string path = "-";  // "-" = stdout
};

struct Config {
  std::string file;
  // store.data_dir (resolved against the config file's directory): where Citadel keeps what it
  // makes itself (ACME accounts and certificates; the embedded stores to come).
  std::string data_dir;
  uint32_t workers = 0;  // 0 = one per core
  std::vector<ListenerConfig> listeners;
  std::optional<HostPort> admin;
  int admin_line = 0;
  std::vector<ClusterConfig> clusters;
  std::vector<RouteConfig> routes;
  AccessLogConfig access_log;
  std::string error_log_level = "info";
  uint64_t drain_timeout_ms = 15'000;
  // Options of the services routes name, by service (`services: { NAME: {...} }`).
  std::map<std::string, FilterEntry> services;
  YAML::Node raw;  // for /config
};

// What this build offers beyond the core: filters and services. Implemented by the extension
// registry (cli wiring); the loader uses it to report unknown names and bad options.
class ExtensionValidator {
 public:
  virtual ~ExtensionValidator() = default;
  // Validates the options of one filter entry.
  virtual void validate(const FilterEntry& entry, const core::ConfigNode& node) const = 0;
  virtual bool has_service(const std::string& name) const = 0;
  // The services' names, for errors ("" when the build has none).
  virtual std::string service_names() const = 0;
  // Validates a service's options (`node` may be absent: the defaults).
  virtual void validate_service(const std::string& name, const core::ConfigNode& node) const = 0;
};

// Loads and validates `file`. On failure returns nullptr and fills `errors` with every problem.
std::unique_ptr<Config> load_config(const std::string& file, const ExtensionValidator& filters,
                                    core::ConfigErrors& errors);

// Parses "host:port" / "[v6]:port".
std::optional<HostPort> parse_host_port(const std::string& text);

// Whether listening sockets on `a` and `b` would take each other's connections: the same port
// (not 0, which picks a free one) and the same host, or either host is a wildcard (0.0.0.0 or
// ::, which on Linux also takes IPv4). Hosts are compared as written.
bool addresses_overlap(const HostPort& a, const HostPort& b);

}  // namespace citadel::proxy
