#include "proxy/active_stream.h"

#include <ctime>

#include "observe/log.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace citadel::proxy {
namespace {

using http::HeaderField;
using http::iequals;

constexpr char kHex[] = "0123456789abcdef";

void random_hex(Rng& rng, char* out, size_t n) {
  uint64_t bits = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i % 16 == 0) bits = rng.next();
    out[i] = kHex[bits & 15];
    bits >>= 4;
  }
}

bool is_hex_string(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zero(std::string_view s) {
  for (char c : s) {
    if (c != '0') return false;
  }
  return true;
}

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2: return iequals(name, "te");
    case 6: return iequals(name, "expect");
    case 7: return iequals(name, "upgrade");
    case 10: return iequals(name, "connection") || iequals(name, "keep-alive");
    case 14: return iequals(name, "content-length");
    case 16: return iequals(name, "proxy-connection");
    case 17: return iequals(name, "transfer-encoding");
    default: return false;
  }
}

// Trailer fields a proxy passes on: not those that frame, route, authenticate, set cookies,
// describe the content or control caching or the request (RFC 9110 section 6.5.1), which a
// recipient must not process from a trailer section, nor hop-by-hop ones.
bool forwardable_trailer(std::string_view name) {
  static constexpr std::string_view kDenied[] = {
      "content-length", "transfer-encoding", "trailer", "host", "connection", "keep-alive",
      "proxy-connection", "te", "upgrade", "authorization", "proxy-authorization",
      "www-authenticate", "proxy-authenticate", "cookie", "set-cookie", "content-type",
      "content-encoding", "content-range", "content-location", "range", "expect",
      "max-forwards", "cache-control", "expires", "age", "pragma", "location", "retry-after",
      "vary", "date"};
  for (std::string_view d : kDenied) {
    if (iequals(name, d)) return false;
  }
  return name.size() < 3 || !iequals(name.substr(0, 3), "if-");
}

void copy_forwardable_trailers(const http::HeaderMap& from, http::HeaderMap& to) {
  for (const auto& f : from.fields()) {
    if (forwardable_trailer(f.name)) to.add(f.name, f.value);
  }
}

// Removes hop-by-hop fields and the fields that `Connection` names (RFC 9110 section 7.6.1).
// `keep_upgrade` keeps Upgrade for a protocol switch.
void strip_hop_by_hop(http::HeaderMap& headers, bool keep_upgrade) {
  std::string_view listed[16];
  size_t nlisted = 0;
  for (const auto& f : headers.fields()) {
    if (iequals(f.name, "connection")) {
      http::for_each_list_element(f.value, [&](std::string_view e) {
        if (nlisted < 16) listed[nlisted++] = e;
      });
    }
  }
  auto& fields = headers.fields();
  size_t w = 0;
  for (size_t r = 0; r < fields.size(); ++r) {
    std::string_view n = fields[r].name;
    bool drop = is_hop_by_hop(n) && !(keep_upgrade && iequals(n, "upgrade"));
    for (size_t i = 0; i < nlisted && !drop; ++i) {
      drop = iequals(n, listed[i]) && !(keep_upgrade && iequals(n, "upgrade"));
    }
    if (!drop) fields[w++] = fields[r];
  }
  fields.resize(w);
}

// RFC 9112 section 3.2.2: "http://host/path" (neither origin-form nor "*").
bool is_absolute_form(std::string_view target) {
  return !target.empty() && target.front() != '/' && target != "*";
}

// "?query" as received (also a bare "?"), or empty.
std::string_view query_part(const http::RequestHead& req) {
  size_t q = req.target.find('?');
  return q == std::string_view::npos ? std::string_view() : req.target.substr(q);
}

// Replaces the value of Host in place (the codec allows one at most), or adds it.
void set_host(http::HeaderMap& headers, std::string_view host) {
  for (auto& f : headers.fields()) {
    if (iequals(f.name, "host")) {
      f.value = host;
      return;
    }
  }
  headers.add("Host", host);
}

bool is_safe_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE";
}

int status_class(int status) {
  if (status < 100 || status > 599) return 0;
  return status / 100;
}

}  // namespace

ActiveStream::ActiveStream(Worker& worker)
    : worker_(worker),
      arena_(4096),
      pending_body_(&worker.blocks()),
      upstream_timer_(&ActiveStream::on_upstream_timer, this),
      route_timer_(&ActiveStream::on_route_timer, this) {}

ActiveStream::~ActiveStream() = default;

core::EventLoop& ActiveStream::loop() { return worker_.loop(); }

std::string_view ActiveStream::route_name() const {
  return route_ != nullptr ? std::string_view(route_->name) : std::string_view();
}

uint64_t ActiveStream::now_us() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

void ActiveStream::begin(http::ServerStream& downstream) {
  ds_ = &downstream;
  req_.reset();
  resp_.reset();
  arena_.reset();
  snap_ = nullptr;
  route_ = nullptr;
  handler_ = nullptr;
  nfilters_ = req_filter_next_ = 0;
  filters_done_ = req_end_ = reset_ = response_started_ = local_reply_ = false;
  body_bytes_ = 0;
  pending_body_.clear();
  pending_end_ = false;
  req_trailers_.clear();
  wc_ = nullptr;
  ep_ = nullptr;
  conn_ = nullptr;
  attempt_ = 0;
  counted_retry_ = body_forwarded_ = request_sent_ = upgraded_ = attempt_active_ = false;
  truncated_ = false;
  timer_mode_ = TimerMode::kNone;
  has_hash_ = false;
  start_us_ = 0;
  upstream_start_us_ = upstream_us_ = bytes_in_ = bytes_out_ = 0;
  status_ = 0;
  request_id_[0] = trace_id_[0] = 0;
  reset_reason_ = {};
  route_path_ = upstream_target_ = {};
}

// ---------------------------------------------------------------------------------------------
// Request path

void ActiveStream::on_request_headers(bool end_stream) {
  start_us_ = now_us();
  req_end_ = end_stream;
  snap_ = worker_.acquire_snapshot();
  const Snapshot& snap = *snap_->snap;

  // An absolute-form target names the host, and a proxy replaces Host with it (RFC 9112
  // section 3.2.2): routing, filters and the upstream must all see that one host, or a request
  // routed on one host would reach the upstream claiming another. The codec has checked the
  // characters (and refused userinfo); the shape is checked here, for a Host field too.
  std::string_view refuse;  // why the request gets a 400, found before routing
  if (is_absolute_form(req_.target)) {
    if (valid_authority(req_.authority)) {
      set_host(req_.headers, req_.authority);
    } else {
      refuse = "invalid request target authority\n";
    }
  } else if (!req_.authority.empty() && !valid_authority(req_.authority)) {
    refuse = "invalid Host\n";  // RFC 9112 section 3.2: 400
  }

  // Route on the normalised path (the upstream receives that same path unless the listener
  // says forward_path: original). A plain path is used as it is, without a copy.
  route_path_ = req_.path;
  bool redirect_path = false;
  if (refuse.empty() && req_.target != "*" && http::path_needs_normalizing(req_.path)) {
    switch (http::normalize_path(req_.path, ds_->connection().path_options, norm_path_)) {
      case http::PathResult::kOk:
        if (norm_path_ != req_.path) route_path_ = norm_path_;
        break;
      case http::PathResult::kNotAbsolute:
        break;
      case http::PathResult::kEscapedSlash:
        refuse = "encoded slash or backslash in the path\n";
        break;
      case http::PathResult::kRedirect:
        redirect_path = true;
        break;
    }
  }
  if (refuse.empty() && !redirect_path) route_ = snap.routes.match(req_, route_path_);

  // A protocol switch only where the route allows it; otherwise the request goes on as a plain
  // one (as Envoy does). The codec reads req_.upgrade back after this call, so it does not
  // expect a tunnel either; such a request has no body unless it declared one.
  if (req_.upgrade && !upgrade_allowed()) {
    req_.upgrade = false;
    if (req_.framing == http::BodyFraming::kNone) req_end_ = true;
  }
  // Hop-by-hop fields go before Citadel adds its own, so that a client cannot name those in
  // `Connection` to have them removed.
  strip_hop_by_hop(req_.headers, req_.upgrade);

  // Request id and trace context, before any filter or local reply, so that both are logged.
  const HeaderField* rid = req_.headers.find("x-request-id");
  if (rid != nullptr && !rid->value.empty() && rid->value.size() <= 64) {
    size_t n = rid->value.size() < 32 ? rid->value.size() : 32;
    std::memcpy(request_id_, rid->value.data(), n);
    request_id_[n] = 0;
  } else {
    if (rid != nullptr) req_.headers.remove("x-request-id");
    random_hex(worker_.rng(), request_id_, 32);
    request_id_[32] = 0;
    req_.headers.add("X-Request-Id", arena_.copy(std::string_view(request_id_, 32)));
  }
  const HeaderField* tp = req_.headers.find("traceparent");
  char span[16];
  random_hex(worker_.rng(), span, 16);
  std::string_view flags = "01";
  bool have_trace = false;
  if (tp != nullptr && tp->value.size() == 55 && tp->value.substr(0, 3) == "00-" &&
      tp->value[35] == '-' && tp->value[52] == '-' && is_hex_string(tp->value.substr(3, 32)) &&
      is_hex_string(tp->value.substr(36, 16)) && is_hex_string(tp->value.substr(53, 2)) &&
      !all_zero(tp->value.substr(3, 32))) {
    std::memcpy(trace_id_, tp->value.data() + 3, 32);
    flags = tp->value.substr(53, 2);
    have_trace = true;
  }
  if (!have_trace) random_hex(worker_.rng(), trace_id_, 32);
  trace_id_[32] = 0;
  req_.headers.set("traceparent",
                   arena_.concat({"00-", std::string_view(trace_id_, 32), "-",
                                  std::string_view(span, 16), "-", flags}));

  if (!refuse.empty()) {
    send_local_reply(400, refuse);
    return;
  }
  if (redirect_path) {
    // To the decoded path, relative (no Host of the client's in it); 307 keeps the method and
    // body and is not cached, so that a change of the listener's option takes effect.
    const http::HeaderField location{"Location", arena_.concat({norm_path_, query_part(req_)})};
    reply_with_field(307, {}, location);
    return;
  }
  if (route_ == nullptr) {
    worker_.services().no_route->add(worker_.index());
    send_local_reply(404, "no route matches this request\n");
    return;
  }
  if (http::iequals(req_.method, "TRACE") && !route_->lists_method(req_.method)) {
    // TRACE echoes the request, cookies and credentials included (cross-site tracing): only a
    // route that lists it serves it. The other routes of the table may allow other methods, so
    // Allow names the usual ones.
    reply_with_field(405, "TRACE is not allowed on this route\n",
                     {"Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"});
    return;
  }
  if (req_.framing == http::BodyFraming::kContentLength && req_.content_length > route_->max_body) {
    send_local_reply(413, "request body too large\n");
    return;
  }
  if (route_->timeout_ms != 0) loop().arm(route_timer_, route_->timeout_ms);
  for (const FilterFactory* f : route_->filters) {
    if (nfilters_ == kMaxFilters) break;
    filters_[nfilters_++] = f->create(arena_);
  }
  run_request_filters();
}

void ActiveStream::run_request_filters() {
  while (req_filter_next_ < nfilters_) {
    Filter* f = filters_[req_filter_next_++];
    FilterStatus st = f->on_request_headers(*this, req_, req_end_);
    if (local_reply_ || reset_) return;
    if (st == FilterStatus::kStop) return;  // suspended: continue_request() resumes
  }
  filters_done_ = true;
  start_target();
  // Body that arrived while the filters were suspended.
  if (!local_reply_ && !reset_ && (!pending_body_.empty() || pending_end_) && conn_ != nullptr) {
    std::string_view v = pending_body_.view();
    bool end = pending_end_;
    pending_end_ = false;
    forward_request_body(v, end);
    pending_body_.clear();
    ds_->resume_request_body();
  }
}

void ActiveStream::continue_request() {
  if (local_reply_ || reset_ || filters_done_) return;
  run_request_filters();
}

void ActiveStream::start_target() {
  if (route_->target == RouteConfig::kCluster) {
    start_upstream();
    return;
  }
  handler_ = route_->handler->create(arena_);
  handler_->on_request_headers(*this, req_end_);  // may complete the stream
}

void ActiveStream::start_upstream() {
  wc_ = &worker_.cluster_state(route_->cluster);
  ++wc_->active_requests;
  const HashPolicy& hp = route_->cluster->config().hash;
  if (route_->cluster->config().lb == LbPolicy::kConsistentHash) {
    if (hp.kind == HashPolicy::kSourceIp) {
      has_hash_ = true;
      lb_hash_ = stable_hash(ds_->connection().peer_ip);
    } else if (hp.kind == HashPolicy::kHeader) {
      if (const HeaderField* f = req_.headers.find(hp.name)) {
        has_hash_ = true;
        lb_hash_ = stable_hash(f->value);
      }
    } else {
      for (const auto& f : req_.headers.fields()) {
        if (!iequals(f.name, "cookie")) continue;
        // Cookie: a=1; b=2
        size_t i = 0;
        std::string_view v = f.value;
        while (i < v.size() && !has_hash_) {
          size_t semi = v.find(';', i);
          if (semi == std::string_view::npos) semi = v.size();
          std::string_view pair = v.substr(i, semi - i);
          while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
          size_t eq = pair.find('=');
          if (eq != std::string_view::npos && pair.substr(0, eq) == hp.name) {
            has_hash_ = true;
            lb_hash_ = stable_hash(pair.substr(eq + 1));
          }
          i = semi + 1;
        }
      }
    }
  }
  prepare_upstream_head();
  send_upstream_attempt();
}

bool ActiveStream::upgrade_allowed() const {
  if (route_ == nullptr || route_->upgrades.empty()) return false;
  bool ok = false;
  for (const auto& f : req_.headers.fields()) {
    if (!iequals(f.name, "upgrade")) continue;
    if (!route_->allows_upgrade(f.value)) return false;
    ok = true;
  }
  return ok;
}

void ActiveStream::prepare_upstream_head() {
  // Target, in origin-form: the path routing matched (normalised by default), or the route's
  // rewrite of it; the query as received. A plain origin-form target is forwarded as it is.
  const http::ConnectionInfo& ci = ds_->connection();
  const std::string_view path = ci.path_options.forward_normalized ? route_path_ : req_.path;
  if (rewrite_target(*route_, route_path_, req_.query, target_)) {
    upstream_target_ = target_;
  } else if (path.data() == req_.path.data() && !is_absolute_form(req_.target)) {
    upstream_target_ = req_.target;
  } else {
    target_.assign(path);
    target_.append(query_part(req_));
    upstream_target_ = target_;
  }
  std::string_view peer(ci.peer_ip);
  // X-Forwarded-For: append the client to whatever the client claimed.
  std::string_view xff;
  for (const auto& f : req_.headers.fields()) {
    if (iequals(f.name, "x-forwarded-for")) {
      xff = xff.empty() ? f.value : arena_.concat({xff, ", ", f.value});
    }
  }
  req_.headers.set("X-Forwarded-For", xff.empty() ? arena_.copy(peer)
                                                   : arena_.concat({xff, ", ", peer}));
  req_.headers.set("X-Forwarded-Proto", req_.scheme);
  if (!req_.authority.empty() && req_.headers.find("x-forwarded-host") == nullptr) {
    req_.headers.add("X-Forwarded-Host", req_.authority);
  }
  const HeaderField* via = req_.headers.find("via");
  std::string_view hop = req_.version_minor == 0 ? "1.0 citadel" : "1.1 citadel";
  req_.headers.set("Via", via != nullptr ? arena_.concat({via->value, ", ", hop}) : hop);
  if (route_->rewrite.host) {
    req_.headers.set("Host", *route_->rewrite.host);
  } else if (req_.headers.find("host") == nullptr) {
    // HTTP/1.1 upstreams require a Host: the client's authority, else (an HTTP/1.0 client
    // without Host) the cluster's name, as NGINX sends its upstream's name.
    req_.headers.add("Host", !req_.authority.empty() ? req_.authority
                                                      : std::string_view(route_->cluster->name()));
  }
}

void ActiveStream::send_upstream_attempt() {
  LbContext ctx;
  ctx.has_hash = has_hash_;
  ctx.hash = lb_hash_;
  ctx.avoid = ep_;
  uint64_t now = worker_.loop().now_ms();
  Cluster& cluster = wc_->cluster();
  ep_ = wc_->pick(ctx, now);
  if (ep_ == nullptr) {
    cluster.stats().no_healthy->add(worker_.index());
    upstream_error(503, "no healthy upstream\n");
    return;
  }
  conn_ = wc_->pool(*ep_).acquire();
  if (conn_ == nullptr) {
    cluster.stats().connect_failures->add(worker_.index());
    if (!try_retry(true)) upstream_error(502, "upstream connect failed\n");
    return;
  }
  ++wc_->active[ep_->index];
  ep_->active_requests->add(worker_.index(), 1);
  attempt_active_ = true;
  upstream_start_us_ = now_us();
  conn_->attach(this);
  conn_->send_head(req_, upstream_target_);
  if (req_.framing == http::BodyFraming::kNone && !req_.upgrade) request_sent_ = true;
  if (!conn_->connected()) {
    arm_upstream_timer(TimerMode::kConnect, cluster.config().timeouts.connect_ms);
  } else {
    arm_upstream_timer(request_sent_ ? TimerMode::kResponse : TimerMode::kIdle,
                       request_sent_ ? cluster.config().timeouts.response_ms
                                     : cluster.config().timeouts.idle_ms);
  }
}

void ActiveStream::on_connected() {
  const UpstreamTimeouts& t = wc_->cluster().config().timeouts;
  if (request_sent_) arm_upstream_timer(TimerMode::kResponse, t.response_ms);
  else arm_upstream_timer(TimerMode::kIdle, t.idle_ms);
}

void ActiveStream::on_request_data(std::string_view data, bool end_stream) {
  bytes_in_ += data.size();
  if (upgraded_) {
    if (conn_ != nullptr) conn_->send_tunnel(data, end_stream);
    if (conn_ != nullptr && conn_->write_blocked()) ds_->pause_request_body();
    return;
  }
  req_end_ = end_stream;
  if (local_reply_ || reset_ || route_ == nullptr) return;
  body_bytes_ += data.size();
  if (body_bytes_ > route_->max_body) {
    if (!response_started_) {
      send_local_reply(413, "request body too large\n");
    } else {
      ds_->reset();
    }
    return;
  }
  if (!filters_done_ || (conn_ == nullptr && route_->target == RouteConfig::kCluster)) {
    // Not ready for the body yet (filters suspended, or between retry attempts).
    pending_body_.append(data);
    pending_end_ = pending_end_ || end_stream;
    ds_->pause_request_body();
    return;
  }
  for (size_t i = 0; i < nfilters_; ++i) {
    filters_[i]->on_request_data(*this, data, end_stream);
    if (local_reply_ || reset_) return;
  }
  if (route_->target != RouteConfig::kCluster) {
    if (handler_ != nullptr) handler_->on_request_data(*this, data, end_stream);
    return;
  }
  forward_request_body(data, end_stream);
}

void ActiveStream::on_request_trailers(const http::HeaderMap& trailers) {
  copy_forwardable_trailers(trailers, req_trailers_);
  on_request_data({}, true);
}

void ActiveStream::forward_request_body(std::string_view data, bool end_stream) {
  if (conn_ == nullptr) return;
  if (!data.empty() || end_stream) body_forwarded_ = true;
  conn_->send_data(data, end_stream,
                   end_stream && req_trailers_.size() != 0 ? &req_trailers_ : nullptr);
  if (end_stream) {
    request_sent_ = true;
    if (conn_ != nullptr && conn_->connected()) {
      arm_upstream_timer(TimerMode::kResponse, wc_->cluster().config().timeouts.response_ms);
    }
  } else if (conn_->connected()) {
    arm_upstream_timer(TimerMode::kIdle, wc_->cluster().config().timeouts.idle_ms);
  }
  if (conn_ != nullptr && conn_->write_blocked()) ds_->pause_request_body();
}

void ActiveStream::on_upstream_write_ready() {
  if (!reset_ && ds_ != nullptr) ds_->resume_request_body();
}

// ---------------------------------------------------------------------------------------------
// Response path

void ActiveStream::on_informational(const http::ResponseHead& head) {
  if (reset_ || response_started_) return;
  if (head.status == 100) return;  // Citadel answered the client's Expect itself
  ds_->send_informational(head);
}

void ActiveStream::on_response_headers(bool end_stream) {
  if (end_stream) conn_ = nullptr;  // the codec has already returned it to the pool
  Cluster& cluster = wc_->cluster();
  const RetryConfig& rc = cluster.config().retry;
  const int status = resp_.status;
  upstream_us_ = now_us() - upstream_start_us_;
  cluster.stats().rq_class[status_class(status)]->add(worker_.index());
  if (status >= 500) {
    cluster.report_failure(*ep_, worker_.loop().now_ms(), worker_.index(), *worker_.services().log);
  } else {
    cluster.report_success(*ep_);
  }
  if (status == 101 && !req_.upgrade) {
    // A switch nobody asked for (the request's Upgrade was refused or absent): a tunnel would
    // carry later bytes past every route and filter.
    if (conn_ != nullptr) {
      conn_->detach();
      conn_->close();
      conn_ = nullptr;
    }
    finish_attempt(false);
    upstream_error(502, "upstream switched protocols unasked\n");
    return;
  }
  bool retry_status = false;
  for (int s : rc.statuses) retry_status = retry_status || s == status;
  if (retry_status && attempt_ < rc.attempts) {
    // Drop this answer (and its connection: its body is unread) and try again.
    if (conn_ != nullptr) {
      conn_->detach();
      conn_->close();
      conn_ = nullptr;
    }
    finish_attempt(false);
    if (try_retry(false)) return;
    // Out of budget: there is no response to forward any more.
    upstream_error(status >= 500 ? status : 502, "upstream error\n");
    return;
  }
  if (end_stream) {
    finish_attempt(true);
  } else {
    arm_upstream_timer(TimerMode::kIdle, cluster.config().timeouts.idle_ms);
  }
  upgraded_ = status == 101;
  strip_hop_by_hop(resp_.headers, upgraded_);
  send_response_headers(end_stream);
}

void ActiveStream::send_response_headers(bool end_stream) {
  if (reset_ || ds_ == nullptr || response_started_) return;
  response_started_ = true;
  status_ = resp_.status;
  for (size_t i = nfilters_; i-- > 0;) {
    filters_[i]->on_response_headers(*this, resp_, end_stream);
  }
  ds_->send_headers(resp_, end_stream);  // may complete the stream: nothing after this
}

void ActiveStream::on_response_data(std::string_view data, bool end_stream) {
  if (reset_) return;
  if (end_stream) {
    conn_ = nullptr;  // detached by the codec (pooled or closed)
    finish_attempt(true);
  } else if (!upgraded_) {
    arm_upstream_timer(TimerMode::kIdle, wc_->cluster().config().timeouts.idle_ms);
  }
  send_response_data(data, end_stream);
}

void ActiveStream::on_response_trailers(const http::HeaderMap& trailers) {
  if (reset_) return;
  conn_ = nullptr;  // detached by the codec (pooled or closed)
  finish_attempt(true);
  if (ds_ == nullptr) return;
  for (size_t i = nfilters_; i-- > 0;) {
    filters_[i]->on_response_data(*this, {}, true);
  }
  http::HeaderMap kept;  // the codec's strings are valid during this call: send at once
  copy_forwardable_trailers(trailers, kept);
  ds_->send_trailers(kept);  // may complete the stream: nothing after this
}

void ActiveStream::send_response_data(std::string_view data, bool end_stream) {
  if (reset_ || ds_ == nullptr) return;
  bytes_out_ += data.size();
  for (size_t i = nfilters_; i-- > 0;) {
    filters_[i]->on_response_data(*this, data, end_stream);
  }
  http::ServerStream* ds = ds_;
  http::http1::ClientConnection* conn = conn_;
  ds->send_data(data, end_stream);  // may complete the stream: use locals only after this
  if (!end_stream && conn != nullptr && ds->write_blocked()) conn->pause_reading();
}

void ActiveStream::on_write_ready() {
  if (conn_ != nullptr) conn_->resume_reading();
  if (handler_ != nullptr && !reset_) handler_->on_write_ready(*this);
}

void ActiveStream::finish_attempt(bool success) {
  loop().timers().cancel(upstream_timer_);
  timer_mode_ = TimerMode::kNone;
  end_active();
  if (success && wc_ != nullptr) {
    wc_->cluster().stats().upstream_latency->observe(worker_.index(), now_us() - upstream_start_us_);
  }
}

void ActiveStream::end_active() {
  if (!attempt_active_) return;
  attempt_active_ = false;
  --wc_->active[ep_->index];
  ep_->active_requests->add(worker_.index(), -1);
}

void ActiveStream::on_failure(http::http1::ClientFailure kind, std::string_view detail) {
  conn_ = nullptr;  // the codec closed it and detached us
  Cluster& cluster = wc_->cluster();
  finish_attempt(false);
  const RetryConfig& rc = cluster.config().retry;
  const bool connect_failure = kind == http::http1::ClientFailure::kConnectFailure;
  if (connect_failure) cluster.stats().connect_failures->add(worker_.index());
  else cluster.stats().rq_class[0]->add(worker_.index());
  cluster.stats().errors[static_cast<size_t>(kind)]->add(worker_.index());
  cluster.report_failure(*ep_, worker_.loop().now_ms(), worker_.index(), *worker_.services().log);
  // Name the cause, with the endpoint, in the error log and in the access log's termination
  // (the detail is the codec's: valid during this call only, so it is copied).
  std::string_view cause = http::http1::failure_name(kind);
  worker_.services().log->log(observe::LogLevel::kWarn, "cluster %s: endpoint %s: %.*s: %.*s",
                              cluster.name().c_str(), ep_->label.c_str(),
                              static_cast<int>(cause.size()), cause.data(),
                              static_cast<int>(detail.size()), detail.data());
  reset_reason_ = arena_.concat({"upstream ", cause, ": ", detail});
  if (reset_) return;
  if (upgraded_) {
    ds_->reset();
    return;
  }
  if (!response_started_) {
    bool eligible = (connect_failure && rc.on_connect_failure) ||
                    (kind == http::http1::ClientFailure::kReset && rc.on_reset);
    if (eligible && try_retry(connect_failure)) {
      return;
    }
    upstream_error(502, connect_failure                                      ? "upstream connect failed\n"
                        : kind == http::http1::ClientFailure::kProtocolError ? "invalid upstream response\n"
                                                                              : "upstream reset\n");
    return;
  }
  // A truncated response must not look complete: the client sees the connection reset, and
  // the request is counted and logged as failed, not as its status.
  truncated_ = true;
  ds_->reset();
}

bool ActiveStream::try_retry(bool connect_failure) {
  Cluster& cluster = wc_->cluster();
  const RetryConfig& rc = cluster.config().retry;
  if (attempt_ >= rc.attempts || reset_ || response_started_) return false;
  // A request body already handed to an upstream cannot be replayed.
  if (body_forwarded_ || req_.upgrade) return false;
  if (!connect_failure && !is_safe_method(req_.method)) return false;
  if (!counted_retry_ && !wc_->retry_allowed()) {
    cluster.stats().retry_overflow->add(worker_.index());
    return false;
  }
  if (!counted_retry_) {
    counted_retry_ = true;
    ++wc_->active_retries;
  }
  ++attempt_;
  cluster.stats().retries->add(worker_.index());
  // Exponential backoff with full jitter.
  uint64_t cap = rc.backoff_base_ms << (attempt_ - 1 < 16 ? attempt_ - 1 : 16);
  if (cap > rc.backoff_max_ms) cap = rc.backoff_max_ms;
  uint64_t delay = cap == 0 ? 0 : worker_.rng().below(static_cast<uint32_t>(cap) + 1);
  if (delay == 0) {
    send_upstream_attempt();
  } else {
    arm_upstream_timer(TimerMode::kBackoff, delay);
  }
  return true;
}

void ActiveStream::upstream_error(int status, std::string_view body) {
  if (response_started_) {
    ds_->reset();
    return;
  }
  send_local_reply(status, body);
}

void ActiveStream::arm_upstream_timer(TimerMode mode, uint64_t ms) {
  timer_mode_ = mode;
  if (ms == 0) {
    loop().timers().cancel(upstream_timer_);
    return;
  }
  loop().arm(upstream_timer_, ms);
}

void ActiveStream::on_upstream_timer(void* arg) {
  auto* s = static_cast<ActiveStream*>(arg);
  TimerMode mode = s->timer_mode_;
  s->timer_mode_ = TimerMode::kNone;
  if (s->reset_ || s->ds_ == nullptr) return;
  if (mode == TimerMode::kBackoff) {
    s->send_upstream_attempt();
    return;
  }
  Cluster& cluster = s->wc_->cluster();
  cluster.stats().timeouts->add(s->worker_.index());
  if (s->conn_ != nullptr) {
    s->conn_->detach();
    s->conn_->close();
    s->conn_ = nullptr;
  }
  s->finish_attempt(false);
  if (s->ep_ != nullptr) {
    cluster.report_failure(*s->ep_, s->loop().now_ms(), s->worker_.index(),
                           *s->worker_.services().log);
  }
  s->reset_reason_ = mode == TimerMode::kConnect ? "upstream connect timeout"
                     : mode == TimerMode::kResponse ? "upstream response timeout"
                                                    : "upstream idle timeout";
  if (s->ep_ != nullptr) {
    s->worker_.services().log->log(observe::LogLevel::kWarn, "cluster %s: endpoint %s: %s",
                                   cluster.name().c_str(), s->ep_->label.c_str(),
                                   s->reset_reason_.data());
  }
  if (mode == TimerMode::kConnect && cluster.config().retry.on_connect_failure &&
      s->try_retry(true)) {
    return;
  }
  if (mode == TimerMode::kResponse) {
    bool retry_504 = false;
    for (int st : cluster.config().retry.statuses) retry_504 = retry_504 || st == 504;
    if (retry_504 && s->try_retry(false)) return;
  }
  if (s->upgraded_ || s->response_started_) {
    s->ds_->reset();
    return;
  }
  s->send_local_reply(504, "upstream timeout\n");
}

void ActiveStream::on_route_timer(void* arg) {
  auto* s = static_cast<ActiveStream*>(arg);
  if (s->reset_ || s->ds_ == nullptr) return;
  s->reset_reason_ = "route timeout";
  if (s->wc_ != nullptr) s->wc_->cluster().stats().timeouts->add(s->worker_.index());
  if (s->response_started_) {
    s->ds_->reset();
    return;
  }
  s->send_local_reply(s->req_end_ ? 504 : 408, "request timeout\n");
}

void ActiveStream::release_upstream() {
  loop().timers().cancel(upstream_timer_);
  if (conn_ != nullptr) {
    conn_->detach();
    conn_->close();  // mid-exchange: never reusable
    conn_ = nullptr;
    end_active();
  }
}

// ---------------------------------------------------------------------------------------------
// Local replies and the end of the stream

void ActiveStream::send_local_reply(int status, std::string_view body,
                                    std::string_view content_type) {
  reply_with_field(status, body, {}, content_type);
}

void ActiveStream::reply_with_field(int status, std::string_view body,
                                    const http::HeaderField& field, std::string_view content_type) {
  if (reset_ || ds_ == nullptr) return;
  if (response_started_) {
    ds_->reset();
    return;
  }
  local_reply_ = true;
  release_upstream();
  resp_.reset();
  resp_.status = status;
  if (!body.empty()) resp_.headers.add("Content-Type", content_type);
  if (!field.name.empty()) resp_.headers.add(field.name, field.value);
  resp_.framing = body.empty() ? http::BodyFraming::kNone : http::BodyFraming::kContentLength;
  resp_.content_length = body.size();
  response_started_ = true;
  status_ = status;
  for (size_t i = nfilters_; i-- > 0;) filters_[i]->on_response_headers(*this, resp_, body.empty());
  http::ServerStream* ds = ds_;
  if (body.empty()) {
    ds->send_headers(resp_, true);
    return;
  }
  ds->send_headers(resp_, false);
  bytes_out_ += body.size();
  ds->send_data(body, true);
}

void ActiveStream::on_reset(std::string_view reason) {
  reset_ = true;
  if (reset_reason_.empty()) reset_reason_ = reason;
  release_upstream();
  if (handler_ != nullptr) handler_->on_reset();
}

void ActiveStream::on_complete() {
  release_upstream();
  loop().timers().cancel(upstream_timer_);
  loop().timers().cancel(route_timer_);
  const uint64_t dur = now_us() - start_us_;
  if (route_ != nullptr) {
    route_->stats.rq_class[(reset_ && !response_started_) || truncated_ ? 0
                                                                         : status_class(status_)]
        ->add(worker_.index());
    route_->stats.latency->observe(worker_.index(), dur);
  }
  if (snap_ != nullptr && worker_.services().access_log != nullptr) write_access_log();
  for (size_t i = 0; i < nfilters_; ++i) filters_[i]->~Filter();
  nfilters_ = 0;
  if (handler_ != nullptr) {
    handler_->~Handler();
    handler_ = nullptr;
  }
  if (wc_ != nullptr) {
    --wc_->active_requests;
    if (counted_retry_) --wc_->active_retries;
    wc_ = nullptr;
  }
  if (snap_ != nullptr) {
    WorkerSnapshot* s = snap_;
    snap_ = nullptr;
    route_ = nullptr;
    worker_.release_snapshot(s);
  }
  ds_ = nullptr;
  worker_.recycle(this);
}

void ActiveStream::write_access_log() {
  std::string& line = scratch_;
  line.clear();
  char when[32];
  size_t when_len = worker_.log_timestamp(when);
  const uint64_t dur_ns = (now_us() - start_us_) * 1000;
  line += "{\"@timestamp\":\"";
  line.append(when, when_len);
  line += "\",\"http.request.method\":\"";
  observe::json_escape(req_.method, line);
  line += "\",\"url.original\":\"";
  observe::json_escape(req_.target, line);
  line += "\",\"url.path\":\"";
  observe::json_escape(req_.path, line);
  line += "\",\"http.response.status_code\":";
  line += std::to_string(status_);
  line += ",\"event.duration\":";
  line += std::to_string(dur_ns);
  line += ",\"source.address\":\"";
  line += ds_->connection().peer_ip;
  line += "\",\"http.request.body.bytes\":";
  line += std::to_string(bytes_in_);
  line += ",\"http.response.body.bytes\":";
  line += std::to_string(bytes_out_);
  line += ",\"http.request.id\":\"";
  observe::json_escape(request_id_, line);
  line += "\",\"trace.id\":\"";
  line += trace_id_;
  line += "\"";
  if (route_ != nullptr) {
    line += ",\"citadel.route\":\"";
    observe::json_escape(route_->name, line);
    line += "\"";
  }
  if (ep_ != nullptr) {
    line += ",\"upstream.address\":\"";
    line += ep_->label;
    line += "\",\"upstream.duration\":";
    line += std::to_string(upstream_us_ * 1000);
  }
  if (truncated_) line += ",\"event.outcome\":\"failure\"";
  if (reset_ || !reset_reason_.empty()) {
    line += ",\"citadel.termination\":\"";
    observe::json_escape(reset_reason_, line);
    line += "\"";
  }
  line += "}\n";
  worker_.services().access_log->ring(worker_.index()).push(line);
}

}  // namespace citadel::proxy
