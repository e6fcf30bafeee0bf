#include "proxy/active_stream.h"

#include <cstring>
#include <ctime>

#include "observe/log.h"
#include "proxy/forwarding.h"
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

}  // namespace

ActiveStream::ActiveStream(Worker& worker)
    : worker_(worker),
      arena_(4096),
      chain_(*this, worker.blocks()),
      route_timer_(&ActiveStream::on_route_timer, this) {}

ActiveStream::~ActiveStream() = default;

pipeline::WorkerContext& ActiveStream::worker() { return worker_; }
core::BlockPool& ActiveStream::blocks() { return worker_.blocks(); }

std::string_view ActiveStream::route_name() const {
  return route_ != nullptr ? std::string_view(route_->name) : std::string_view();
}

uint64_t ActiveStream::now_us() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

void ActiveStream::begin(http::ServerStream& downstream) {
  next_generation();
  ds_ = &downstream;
  req_.reset();
  resp_.reset();
  arena_.reset();
  info_.reset();
  snap_ = nullptr;
  route_ = nullptr;
  handler_ = nullptr;
  handler_reset_ = reset_ = response_started_ = upgraded_ = response_paused_ = false;
  request_ended_ = false;
  request_pauses_ = 0;
  body_bytes_ = 0;
  resp_left_ = kUncounted;
  route_path_ = routed_path_ = refuse_ = {};
  route_path_status_ = RoutePath::kOk;
  listener_filters_ = 0;
  start_us_ = 0;
  bytes_in_ = bytes_out_ = 0;
  status_ = 0;
  request_id_[0] = trace_id_[0] = 0;
}

// ---------------------------------------------------------------------------------------------
// Request path

void ActiveStream::on_request_headers(bool end_stream) {
  start_us_ = now_us();
  request_ended_ = end_stream;
  snap_ = worker_.acquire_snapshot();
  const Snapshot& snap = *snap_->snap;

  // An absolute-form target names the host, and a proxy replaces Host with it (RFC 9112
  // section 3.2.2): routing, filters and the upstream must all see that one host, or a request
  // routed on one host would reach the upstream claiming another. The codec has checked the
  // characters (and refused userinfo); the shape is checked here, for a Host field too.
  std::string_view refuse;  // why the request gets a 400, found before routing
  // A Host field that is present must name a host (empty or malformed: 400, RFC 9112 section
  // 3.2), also when an absolute-form target replaces it. In origin-form the authority is the
  // Host field's value, so the field is looked up only when that is empty.
  if (is_absolute_form(req_.target)) {
    const HeaderField* host_field = req_.headers.find("host");
    if (!valid_authority(req_.authority)) {
      refuse = "invalid request target authority\n";
    } else if (host_field != nullptr &&
               (host_field->value.empty() || !valid_authority(host_field->value))) {
      refuse = "invalid Host\n";
    } else {
      set_host(req_.headers, req_.authority);
    }
  } else if (req_.authority.empty() ? req_.headers.find("host") != nullptr
                                    : !valid_authority(req_.authority)) {
    refuse = "invalid Host\n";
  }

  refuse_ = refuse;
  route_path_status_ = prepare_route_path();
  if (refuse_.empty() && route_path_status_ == RoutePath::kOk) {
    route_ = snap.routes.match(req_, route_path_);
  }

  // A protocol switch only where the route allows it; otherwise the request goes on as a plain
  // one (as Envoy does). The codec reads req_.upgrade back after this call, so it does not
  // expect a tunnel either; such a request has no body unless it declared one. (Decided on the
  // route before the listener's filters: they may still change the route, see route_request.)
  if (req_.upgrade && !upgrade_allowed()) {
    req_.upgrade = false;
    if (req_.framing == http::BodyFraming::kNone) end_stream = true;
  }
  // Hop-by-hop fields go before Citadel adds its own, so that a client cannot name those in
  // `Connection` to have them removed.
  strip_hop_by_hop(req_.headers, req_.upgrade);

  // Request id and trace context, before any filter or local reply, so that both are logged.
  stamp_request_id_and_trace();

  // The listener's filters run first, on every request, before routing: they may answer (a
  // redirect to https), change what routing sees, and they see every response, the early ones
  // (400, 404) included. Then route_request() picks the route and appends its filters.
  const ListenerRuntime* lr = nullptr;
  if (snap.listeners_with_filters) {
    for (const auto& l : snap.listeners) {
      if (l.id == ds_->connection().listener_id) lr = &l;
    }
  }
  listener_filters_ = lr != nullptr ? lr->filters.size() : 0;
  routed_path_ = req_.path;
  chain_.init(lr != nullptr ? lr->filters.data() : nullptr, listener_filters_,
              pipeline::ChainLimits(), /*route_after=*/true);
  if (!refuse_.empty()) {
    // A malformed authority is answered before any filter looks at the request (a redirect
    // would build its Location from it); the answer still passes the listener's filters.
    early_reply(400, refuse_);
    return;
  }
  chain_.request_headers(end_stream);
}

ActiveStream::RoutePath ActiveStream::prepare_route_path() {
  // Route on the normalised path (the upstream receives that same path unless the listener
  // says forward_path: original). A plain path is used as it is, without a copy.
  route_path_ = req_.path;
  if (req_.target == "*" || !http::path_needs_normalizing(req_.path)) return RoutePath::kOk;
  switch (http::normalize_path(req_.path, ds_->connection().path_options, norm_path_)) {
    case http::PathResult::kOk:
      if (norm_path_ != req_.path) route_path_ = norm_path_;
      return RoutePath::kOk;
    case http::PathResult::kNotAbsolute:
      return RoutePath::kOk;
    case http::PathResult::kEscapedSlash:
      return RoutePath::kEscapedSlash;
    case http::PathResult::kRedirect:
      return RoutePath::kRedirect;
  }
  return RoutePath::kOk;
}

void ActiveStream::route_request(bool /*end_stream*/) {
  const Snapshot& snap = *snap_->snap;
  if (listener_filters_ != 0) {
    // The listener's filters may have changed the path or the fields routes match on.
    if (req_.path.data() != routed_path_.data() || req_.path != routed_path_) {
      route_path_status_ = prepare_route_path();
    }
    route_ = refuse_.empty() && route_path_status_ == RoutePath::kOk
                 ? snap.routes.match(req_, route_path_)
                 : nullptr;
    if (req_.upgrade && !upgrade_allowed()) {
      // The codec expects a tunnel already: this request cannot go on as a plain one.
      refuse_ = "this route does not allow the protocol switch\n";
      route_ = nullptr;
    }
  }
  if (!refuse_.empty()) {
    early_reply(400, refuse_);
    return;
  }
  if (route_path_status_ == RoutePath::kEscapedSlash) {
    early_reply(400, "encoded slash or backslash in the path\n");
    return;
  }
  if (route_path_status_ == RoutePath::kRedirect) {
    // To the decoded path, relative (no Host of the client's in it); 307 keeps the method and
    // body and is not cached, so that a change of the listener's option takes effect. A path
    // that starts with "//" (slashes not merged) would read as another host ("//evil.com"):
    // one leading slash only.
    std::string_view path = norm_path_;
    while (path.size() > 1 && path[1] == '/') path.remove_prefix(1);
    const http::HeaderField location{"Location", arena_.concat({path, query_part(req_)})};
    early_reply(307, {}, &location);
    return;
  }
  if (route_ == nullptr) {
    worker_.services().no_route->add(worker_.index());
    early_reply(404, "no route matches this request\n");
    return;
  }
  if (http::iequals(req_.method, "TRACE") && !route_->lists_method(req_.method)) {
    // TRACE echoes the request, cookies and credentials included (cross-site tracing): only a
    // route that lists it serves it. The other routes of the table may allow other methods, so
    // Allow names the usual ones.
    const http::HeaderField allow{"Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"};
    early_reply(405, "TRACE is not allowed on this route\n", &allow);
    return;
  }
  if (req_.framing == http::BodyFraming::kContentLength && req_.content_length > route_->max_body) {
    early_reply(413, "request body too large\n");
    return;
  }
  if (route_->timeout_ms != 0) loop().arm(route_timer_, route_->timeout_ms);
  pipeline::ChainLimits limits;
  limits.request_buffer = route_->buffer_limit;
  limits.response_buffer = route_->buffer_limit;
  chain_.append(route_->filters.data(), route_->filters.size(), limits);
}

void ActiveStream::stamp_request_id_and_trace() {
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
}

bool ActiveStream::upgrade_allowed() const {
  if (route_ == nullptr || route_->upgrades.empty()) return false;
  bool ok = false;
  for (const auto& f : req_.headers.fields()) {
    if (!http::iequals(f.name, "upgrade")) continue;
    if (!route_->allows_upgrade(f.value)) return false;
    ok = true;
  }
  return ok;
}

void ActiveStream::early_reply(int status, std::string_view body, const http::HeaderField* extra) {
  // Through the listener's filters (the chain holds only those while routing).
  chain_.local_reply(status, body, "text/plain", extra);
}

void ActiveStream::on_request_data(std::string_view data, bool end_stream) {
  bytes_in_ += data.size();
  if (upgraded_) {
    if (handler_ != nullptr && !handler_reset_) handler_->on_tunnel_data(*this, data, end_stream);
    return;
  }
  if (reset_ || route_ == nullptr) return;
  body_bytes_ += data.size();
  if (end_stream) request_ended_ = true;
  if (body_bytes_ > route_->max_body) {
    abandon_target();
    chain_.local_reply(413, "request body too large\n", "text/plain");  // resets a started one
    return;
  }
  chain_.request_data(data, end_stream);
}

void ActiveStream::on_request_trailers(const http::HeaderMap& trailers) {
  if (reset_ || route_ == nullptr || upgraded_) return;
  request_ended_ = true;
  http::HeaderMap kept;  // views of the codec's strings, which live as long as the stream
  copy_forwardable_trailers(trailers, kept);
  chain_.request_trailers(kept);
}

void ActiveStream::target_headers(bool end_stream) {
  handler_ = route_->handler->create(arena_);
  handler_->on_request_headers(*this, end_stream);  // may complete the stream
}

void ActiveStream::target_data(std::string_view data, bool end_stream) {
  if (handler_ != nullptr && !handler_reset_) handler_->on_request_data(*this, data, end_stream);
}

void ActiveStream::target_trailers(const http::HeaderMap& trailers) {
  if (handler_ != nullptr && !handler_reset_) handler_->on_request_trailers(*this, trailers);
}

void ActiveStream::abandon_target() {
  if (handler_ == nullptr || handler_reset_) return;
  handler_reset_ = true;
  handler_->on_reset();
}

void ActiveStream::set_request_pause(uint8_t reason, bool paused) {
  if (ds_ == nullptr || reset_ || (reason == kTargetPause && handler_reset_)) return;
  const uint8_t before = request_pauses_;
  request_pauses_ = paused ? (request_pauses_ | reason) : (request_pauses_ & ~reason);
  if (before == 0 && request_pauses_ != 0) ds_->pause_request_body();
  else if (before != 0 && request_pauses_ == 0) ds_->resume_request_body();
}

void ActiveStream::pause_request_source(bool paused) { set_request_pause(kChainPause, paused); }

void ActiveStream::pause_response_source(bool paused) {
  response_paused_ = paused;
  if (!paused && !client_blocked() && handler_ != nullptr && !handler_reset_) {
    handler_->on_response_ready(*this);
  }
}

// ---------------------------------------------------------------------------------------------
// Response path

// The HandlerContext calls below do nothing once the handler was told on_reset() (a filter
// answered instead, or the stream is gone): a late handler never reaches another response.
void ActiveStream::send_informational(const http::ResponseHead& head) {
  if (reset_ || handler_reset_ || response_started_ || ds_ == nullptr) return;
  ds_->send_informational(head);
}

void ActiveStream::send_response_headers(bool end_stream) {
  if (reset_ || handler_reset_ || ds_ == nullptr) return;
  chain_.response_headers(resp_, end_stream);
}

void ActiveStream::send_response_data(std::string_view data, bool end_stream) {
  if (reset_ || handler_reset_ || ds_ == nullptr) return;
  if (upgraded_) {
    // Tunnel bytes after a 101 go straight to the client.
    bytes_out_ += data.size();
    ds_->send_data(data, end_stream);
    return;
  }
  chain_.response_data(data, end_stream);
}

void ActiveStream::send_response_trailers(const http::HeaderMap& trailers) {
  if (reset_ || handler_reset_ || ds_ == nullptr) return;
  chain_.response_trailers(trailers);
}

void ActiveStream::send_local_reply(int status, std::string_view body) {
  if (reset_ || handler_reset_ || ds_ == nullptr) return;
  chain_.local_reply(status, body, "text/plain");
}

void ActiveStream::reset_stream() {
  if (!handler_reset_) reset_client();
}

void ActiveStream::reset_client() {
  if (reset_ || ds_ == nullptr) return;
  // The response cannot be completed: count and log it as failed, and tell the filters and the
  // target (they cancel what they wait for) before the codec completes the stream.
  if (response_started_) info_.failed = true;
  if (info_.termination.empty()) info_.termination = "response cut short";
  reset_ = true;
  chain_.reset();
  abandon_target();
  ds_->reset();  // completes the stream (on_complete) before returning
}

void ActiveStream::client_headers(http::ResponseHead& head, bool end_stream) {
  if (reset_ || ds_ == nullptr) return;
  response_started_ = true;
  status_ = head.status;
  upgraded_ = head.status == 101;
  // A body announced by Content-Length must be exactly that long, whatever filters did to it:
  // counted here, so that a mismatch cuts the response short instead of desynchronising the
  // connection.
  const bool bodiless = req_.is_head || head.status == 204 || head.status == 304 ||
                        head.status < 200;
  resp_left_ = head.framing == http::BodyFraming::kContentLength && !bodiless
                   ? head.content_length
                   : kUncounted;
  ds_->send_headers(head, end_stream);  // may complete the stream: nothing after this
}

void ActiveStream::client_data(std::string_view data, bool end_stream) {
  if (reset_ || ds_ == nullptr) return;
  if (resp_left_ != kUncounted) {
    if (data.size() > resp_left_ || (end_stream && data.size() != resp_left_)) {
      info_.termination = "response body does not match its Content-Length";
      reset_client();
      return;
    }
    resp_left_ -= data.size();
  }
  bytes_out_ += data.size();
  ds_->send_data(data, end_stream);  // may complete the stream: nothing after this
}

void ActiveStream::client_trailers(const http::HeaderMap& trailers) {
  if (reset_ || ds_ == nullptr) return;
  if (resp_left_ != kUncounted && resp_left_ != 0) {
    info_.termination = "response body does not match its Content-Length";
    reset_client();
    return;
  }
  ds_->send_trailers(trailers);  // may complete the stream: nothing after this
}

void ActiveStream::on_write_ready() {
  if (reset_) return;
  chain_.response_ready();
  if (handler_ != nullptr && !handler_reset_ && !response_paused_) {
    handler_->on_response_ready(*this);
  }
}

void ActiveStream::on_route_timer(void* arg) {
  auto* s = static_cast<ActiveStream*>(arg);
  if (s->reset_ || s->ds_ == nullptr) return;
  s->info_.termination = "route timeout";
  if (s->route_->cluster) s->route_->cluster->stats().timeouts->add(s->worker_.index());
  if (s->response_started_) {
    s->reset_client();
    return;
  }
  s->abandon_target();
  // 408 while the client is still sending, 504 while the target has not answered.
  s->chain_.local_reply(s->request_ended_ ? 504 : 408,
                        "request timeout\n", "text/plain");
}

// ---------------------------------------------------------------------------------------------
// The end of the stream

void ActiveStream::on_reset(std::string_view reason, int answered) {
  reset_ = true;
  next_generation();  // the stream is gone: a completion that comes now is dropped
  // The client got the codec's answer (a 408, a 400): logged and counted as that status.
  if (answered != 0 && !response_started_) status_ = answered;
  if (info_.termination.empty()) info_.termination = reason;
  chain_.reset();
  abandon_target();
}

void ActiveStream::on_complete() {
  loop().timers().cancel(route_timer_);
  // A filter may still wait for something (suspended on a request body the target no longer
  // needed): the stream is gone for it too.
  if (chain_.waiting()) chain_.reset();
  const uint64_t dur = now_us() - start_us_;
  if (route_ != nullptr) {
    const bool failed = (reset_ && !response_started_ && status_ == 0) || info_.failed;
    route_->stats.rq_class[failed ? 0 : status_class(status_)]->add(worker_.index());
    route_->stats.latency->observe(worker_.index(), dur);
  }
  if (snap_ != nullptr && worker_.services().access_log != nullptr) write_access_log();
  chain_.destroy();
  if (handler_ != nullptr) {
    handler_->~Handler();  // releases whatever it still holds (an upstream connection)
    handler_ = nullptr;
  }
  if (snap_ != nullptr) {
    WorkerSnapshot* s = snap_;
    snap_ = nullptr;
    route_ = nullptr;
    worker_.release_snapshot(s);
  }
  ds_ = nullptr;
  next_generation();  // a completion that arrives now finds its handle stale
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
  if (!info_.upstream_address.empty()) {
    line += ",\"upstream.address\":\"";
    line += info_.upstream_address;
    line += "\",\"upstream.duration\":";
    line += std::to_string(info_.upstream_us * 1000);
  }
  if (info_.failed) line += ",\"event.outcome\":\"failure\"";
  if (reset_ || !info_.termination.empty()) {
    line += ",\"citadel.termination\":\"";
    observe::json_escape(info_.termination, line);
    line += "\"";
  }
  line += "}\n";
  worker_.services().access_log->ring(worker_.index()).push(line);
}

}  // namespace citadel::proxy
