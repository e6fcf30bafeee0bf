// Routes compiled from config, and the table that picks one per request.
//
// Immutable once built (part of a Snapshot); match() runs on workers concurrently.
#pragma once

#include <re2/re2.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/pipeline/filter.h"
#include "http/pipeline/handler.h"
#include "observe/metrics.h"
#include "proxy/cluster.h"
#include "proxy/config.h"

namespace citadel::proxy {

struct RouteStats {
  observe::Counter* rq_class[6] = {};  // [0]: reset before a response; then 1xx..5xx
  observe::Histogram* latency = nullptr;
};

struct Route {
  std::string name;
  // Match.
  std::vector<std::string> exact_hosts;     // lower-case, without port
  std::vector<std::string> wildcard_hosts;  // ".example.com" for "*.example.com"
  RouteMatchConfig::PathKind path_kind = RouteMatchConfig::kAny;
  std::string path;
  std::unique_ptr<re2::RE2> path_regex;  // kRegex: must match the whole path
  std::vector<std::string> methods;
  struct CompiledHeaderMatch {
    HeaderMatch spec;
    std::unique_ptr<re2::RE2> re;  // kRegex: must match the whole value
  };
  std::vector<CompiledHeaderMatch> headers;
  // Rewrite.
  RewriteConfig rewrite;
  std::unique_ptr<re2::RE2> rewrite_regex;  // rewrite.regex's pattern; every match is replaced
  // Target.
  RouteConfig::TargetKind target = RouteConfig::kRespond;
  std::shared_ptr<Cluster> cluster;          // kCluster
  std::unique_ptr<pipeline::HandlerFactory> handler;  // the target (a cluster too)
  // Limits.
  uint64_t max_body = 0;
  uint64_t buffer_limit = 1 << 20;  // what the filter chain may hold (413 / 500 past it)
  uint64_t timeout_ms = 0;
  // Upgrade protocols forwarded on this route (lower case; never "h2c").
  std::vector<std::string> upgrades;
  // Filters: listener-wide first, then the route's own.
  std::vector<const pipeline::FilterFactory*> filters;
  RouteStats stats;

  bool matches(const http::RequestHead& head, std::string_view host_no_port,
               std::string_view norm_path) const;
  // True when `match.methods` names `method` itself (not just "any method"). TRACE is served
  // only by a route that lists it: it echoes the request, cookies and credentials included.
  bool lists_method(std::string_view method) const;
  // True when every protocol of the request's Upgrade field value (`upgrade`, e.g.
  // "websocket" or "WebSocket/13") is one of `upgrades`, compared case-insensitively.
  bool allows_upgrade(std::string_view upgrade) const;
};

class RouteTable {
 public:
  void add(std::unique_ptr<Route> r) { routes_.push_back(std::move(r)); }
  // First route that matches, or nullptr. `norm_path` is the normalised path.
  const Route* match(const http::RequestHead& head, std::string_view norm_path) const;
  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

 private:
  std::vector<std::unique_ptr<Route>> routes_;
};

// Applies a route's path rewrite to `path`, writing the new request target (with `query`)
// into `out`. kNone: the route has no path rewrite. kRefused: the rewrite produced a dot
// segment ("/static../x" stripped of "/static" is "/../x"), which the upstream would resolve to
// a path routing never matched: the request is refused.
enum class Rewrite { kNone, kRewritten, kRefused };
Rewrite rewrite_target(const Route& r, std::string_view path, std::string_view query,
                       std::string& out);

// True for an authority that is `host [":" port]` (RFC 3986 section 3.2.2, without userinfo):
// a bracketed IP literal or a non-empty reg-name / IPv4 address, and a port of at most 65535.
// The codec has checked the characters; this checks the shape, so that "[", "a:b:c" or
// "h:99999" never reach routing or an upstream.
bool valid_authority(std::string_view authority);

// "Host:port" -> "host" (lower-cased into `buf` when needed).
std::string_view host_without_port(std::string_view authority, std::string& buf);

}  // namespace citadel::proxy
