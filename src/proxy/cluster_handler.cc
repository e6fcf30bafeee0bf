#include "proxy/cluster_handler.h"

#include <ctime>

#include "observe/log.h"
#include "proxy/forwarding.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace citadel::proxy {

using http::HeaderField;
using http::iequals;

pipeline::Handler* ClusterHandlerFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<ClusterHandler>(arena, route_);
}

// The parked body (a retry's backoff, a wait at the cluster's limit) is at most a read's worth
// (the client is paused at once): plain heap storage, not the worker's pool.
ClusterHandler::ClusterHandler(const Route& route)
    : route_(route), timer_(&ClusterHandler::on_timer, this), pending_(nullptr) {}

ClusterHandler::~ClusterHandler() {
  release_upstream();
  if (wc_ != nullptr) {
    --wc_->active_requests;
    if (counted_retry_) --wc_->active_retries;
  }
}

uint64_t ClusterHandler::now_us() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// ---------------------------------------------------------------------------------------------
// Request side

void ClusterHandler::on_request_headers(pipeline::HandlerContext& ctx, bool end_stream) {
  ctx_ = &ctx;
  // The worker context of a proxy stream is always the proxy's Worker (this handler is part of
  // the proxy layer and is created only by it).
  worker_ = &static_cast<Worker&>(ctx.worker());
  WorkerCluster& wc = worker_->cluster_state(route_.cluster);
  if (!wc.admit_request()) {
    // max_requests (this worker's share) reached: refuse at once rather than queue.
    wc.cluster().stats().overflow_requests->add(worker_->index());
    ctx.info().termination = "upstream overflow: max_requests";
    ctx.send_local_reply(503, "upstream overflow\n");
    return;
  }
  wc_ = &wc;
  ++wc_->active_requests;
  compute_hash();
  if (!prepare_head()) {
    --wc_->active_requests;
    wc_ = nullptr;
    ctx.info().termination = "rewrite produced a dot segment";
    ctx.send_local_reply(400, "the rewritten path holds a dot segment\n");
    return;
  }
  (void)end_stream;  // the head's framing says whether a body follows
  send_attempt();
}

void ClusterHandler::compute_hash() {
  const ClusterConfig& cc = route_.cluster->config();
  if (cc.lb != LbPolicy::kConsistentHash) return;
  const HashPolicy& hp = cc.hash;
  const http::RequestHead& req = ctx_->request();
  if (hp.kind == HashPolicy::kSourceIp) {
    has_hash_ = true;
    lb_hash_ = stable_hash(ctx_->connection().peer_ip);
  } else if (hp.kind == HashPolicy::kHeader) {
    if (const HeaderField* f = req.headers.find(hp.name)) {
      has_hash_ = true;
      lb_hash_ = stable_hash(f->value);
    }
  } else {
    for (const auto& f : req.headers.fields()) {
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

bool ClusterHandler::switch_asked_for(const http::ResponseHead& resp) {
  const http::RequestHead& req = ctx_->request();
  if (!req.upgrade) return false;
  const http::HeaderField* asked = req.headers.find("upgrade");
  const http::HeaderField* got = resp.headers.find("upgrade");
  if (asked == nullptr || got == nullptr) return false;
  // Every protocol the upstream names must be one the client asked for (RFC 9110 section 7.8).
  bool all = true;
  bool any = false;
  http::for_each_list_element(got->value, [&](std::string_view p) {
    any = true;
    bool listed = false;
    http::for_each_list_element(asked->value, [&](std::string_view a) {
      listed = listed || iequals(a, p);
    });
    all = all && listed && !iequals(p, "h2c");
  });
  return any && all;
}

bool ClusterHandler::prepare_head() {
  http::RequestHead& req = ctx_->request();
  core::Arena& arena = ctx_->arena();
  // Target, in origin-form: the path routing matched (normalised by default), or the route's
  // rewrite of it; the query as received. A plain origin-form target is forwarded as it is.
  const http::ConnectionInfo& ci = ctx_->connection();
  const std::string_view route_path = ctx_->route_path();
  const std::string_view path = ci.path_options.forward_normalized ? route_path : req.path;
  // Built targets go into the request's arena (through the worker's scratch string for a
  // rewrite): no heap allocation per request once the worker is warm.
  std::string& scratch = worker_->scratch();
  const Rewrite rw = rewrite_target(route_, route_path, req.query, scratch);
  if (rw == Rewrite::kRewritten) {
    target_ = arena.copy(scratch);
  } else if (rw == Rewrite::kRefused) {
    return false;
  } else if (path.data() == req.path.data() && path.size() == req.path.size() &&
             !is_absolute_form(req.target)) {
    target_ = req.target;
  } else {
    target_ = arena.concat({path, query_part(req)});
  }
  std::string_view peer(ci.peer_ip);
  // X-Forwarded-For: append the client to whatever the client claimed.
  std::string_view xff;
  for (const auto& f : req.headers.fields()) {
    if (iequals(f.name, "x-forwarded-for")) {
      xff = xff.empty() ? f.value : arena.concat({xff, ", ", f.value});
    }
  }
  req.headers.set("X-Forwarded-For", xff.empty() ? arena.copy(peer)
                                                  : arena.concat({xff, ", ", peer}));
  req.headers.set("X-Forwarded-Proto", req.scheme);
  if (!req.authority.empty() && req.headers.find("x-forwarded-host") == nullptr) {
    req.headers.add("X-Forwarded-Host", req.authority);
  }
  const HeaderField* via = req.headers.find("via");
  // The protocol the request came in with (RFC 9110 7.6.3): "2" for an HTTP/2 client.
  std::string_view hop = req.version_major == 2   ? "2 citadel"
                         : req.version_minor == 0 ? "1.0 citadel"
                                                  : "1.1 citadel";
  req.headers.set("Via", via != nullptr ? arena.concat({via->value, ", ", hop}) : hop);
  if (route_.rewrite.host) {
    req.headers.set("Host", *route_.rewrite.host);
  } else if (req.headers.find("host") == nullptr) {
    // HTTP/1.1 upstreams require a Host: the client's authority, else (an HTTP/1.0 client
    // without Host) the cluster's name, as NGINX sends its upstream's name.
    req.headers.add("Host", !req.authority.empty() ? req.authority
                                                    : std::string_view(route_.cluster->name()));
  }
  return true;
}

void ClusterHandler::send_attempt() {
  LbContext lb;
  lb.has_hash = has_hash_;
  lb.hash = lb_hash_;
  lb.avoid = ep_;
  const size_t w = worker_->index();
  Cluster& cluster = wc_->cluster();
  ep_ = wc_->pick(lb, worker_->loop().now_ms());
  if (ep_ == nullptr) {
    cluster.stats().no_healthy->add(w);
    fail_request(503, "no healthy upstream\n");
    return;
  }
  ctx_->info().upstream_address = ep_->label;
  http::UpstreamStream* conn = nullptr;
  switch (wc_->acquire(*ep_, *this, conn)) {
    case WorkerCluster::Acquire::kReady:
      start_exchange(*conn);
      return;
    case WorkerCluster::Acquire::kQueued: {
      // At max_connections: wait for one, at most the connect timeout (bounded even when
      // connects are not, connect: 0s: a queue without a bound is a hang).
      queued_ = true;
      const uint64_t connect_ms = cluster.config().timeouts.connect_ms;
      arm_timer(TimerMode::kPoolWait, connect_ms != 0 ? connect_ms : kDefaultPoolWaitMs);
      return;
    }
    case WorkerCluster::Acquire::kOverflow:
      cluster.stats().overflow_pending->add(w);
      ctx_->info().termination = "upstream overflow: max_pending";
      fail_request(503, "upstream overflow\n");
      return;
    case WorkerCluster::Acquire::kFailed:
      cluster.stats().connect_failures->add(w);
      if (!try_retry(true)) fail_request(502, "upstream connect failed\n");
      return;
  }
}

void ClusterHandler::on_pool_ready(http::UpstreamStream& conn) {
  queued_ = false;
  worker_->loop().timers().cancel(timer_);
  timer_mode_ = TimerMode::kNone;
  start_exchange(conn);
}

void ClusterHandler::start_exchange(http::UpstreamStream& conn) {
  Cluster& cluster = wc_->cluster();
  const size_t w = worker_->index();
  conn_ = &conn;
  ++wc_->active[ep_->index];
  ep_->active_requests->add(w, 1);
  attempt_active_ = true;
  upstream_start_us_ = now_us();
  const http::RequestHead& req = ctx_->request();
  conn_->attach(this);
  conn_->send_head(req, target_);
  if (req.framing == http::BodyFraming::kNone && !req.upgrade) request_sent_ = true;
  // Body that arrived while no connection could take it (a retry's backoff, a wait at the
  // cluster's limit) goes now, and the client may send on.
  if (!pending_.empty() || pending_end_) {
    const bool end = pending_end_;
    pending_end_ = false;
    send_body(pending_.view(), end);
    pending_.clear();
    if (conn_ == nullptr || reset_) return;
  }
  if (parked_) {
    parked_ = false;
    if (!conn_->write_blocked()) ctx_->resume_request_body();
  }
  const UpstreamTimeouts& t = cluster.config().timeouts;
  if (!conn_->connected()) {
    arm_timer(TimerMode::kConnect, t.connect_ms);
  } else {
    arm_timer(request_sent_ ? TimerMode::kResponse : TimerMode::kIdle,
              request_sent_ ? t.response_ms : t.idle_ms);
  }
}

void ClusterHandler::on_connected() {
  const UpstreamTimeouts& t = wc_->cluster().config().timeouts;
  if (request_sent_) arm_timer(TimerMode::kResponse, t.response_ms);
  else arm_timer(TimerMode::kIdle, t.idle_ms);
}

void ClusterHandler::on_request_data(pipeline::HandlerContext& ctx, std::string_view data,
                                     bool end_stream) {
  if (reset_) return;
  if (conn_ == nullptr) {
    // Between attempts (a retry's backoff): parked, and sent with the next attempt's head.
    pending_.append(data);
    pending_end_ = pending_end_ || end_stream;
    parked_ = true;
    ctx.pause_request_body();
    return;
  }
  send_body(data, end_stream);
}

void ClusterHandler::on_request_trailers(pipeline::HandlerContext& ctx,
                                         const http::HeaderMap& trailers) {
  // The chain's copy: strings in the request's arena, the map itself valid during this call.
  for (const auto& f : trailers.fields()) trailers_.add(f.name, f.value);
  on_request_data(ctx, {}, true);
}

void ClusterHandler::send_body(std::string_view data, bool end_stream) {
  if (!data.empty() || end_stream) body_forwarded_ = true;
  conn_->send_data(data, end_stream, end_stream && trailers_.size() != 0 ? &trailers_ : nullptr);
  const UpstreamTimeouts& t = wc_->cluster().config().timeouts;
  if (end_stream) {
    request_sent_ = true;
    if (conn_->connected()) arm_timer(TimerMode::kResponse, t.response_ms);
  } else if (conn_->connected()) {
    arm_timer(TimerMode::kIdle, t.idle_ms);
  }
  if (conn_->write_blocked()) ctx_->pause_request_body();
}

void ClusterHandler::on_tunnel_data(pipeline::HandlerContext& ctx, std::string_view data,
                                    bool end_stream) {
  if (conn_ == nullptr) return;
  conn_->send_tunnel(data, end_stream);
  if (conn_ != nullptr && conn_->write_blocked()) ctx.pause_request_body();
}

void ClusterHandler::on_upstream_write_ready() {
  if (!reset_) ctx_->resume_request_body();
}

// ---------------------------------------------------------------------------------------------
// Response side

void ClusterHandler::on_informational(const http::ResponseHead& head) {
  if (reset_ || response_sent_) return;
  if (head.status == 100) return;  // Citadel answered the client's Expect itself
  ctx_->send_informational(head);
}

void ClusterHandler::on_response_headers(bool end_stream) {
  if (end_stream) conn_ = nullptr;  // the codec has already returned it to the pool
  Cluster& cluster = wc_->cluster();
  const size_t w = worker_->index();
  const RetryConfig& rc = cluster.config().retry;
  http::ResponseHead& resp = ctx_->response_head();
  const int status = resp.status;
  ctx_->info().upstream_us = now_us() - upstream_start_us_;
  cluster.stats().rq_class[status_class(status)]->add(w);
  if (status >= 500) {
    cluster.report_failure(*ep_, worker_->loop().now_ms(), w, *worker_->services().log);
  } else {
    cluster.report_success(*ep_);
  }
  if (status == 101 && !switch_asked_for(resp)) {
    // A switch nobody asked for (the request's Upgrade was refused or absent), or to another
    // protocol than the client named (h2c to a websocket request): a tunnel would carry later
    // bytes past every route and filter.
    release_upstream();
    finish_attempt(false);
    fail_request(502, "upstream switched protocols unasked\n");
    return;
  }
  bool retry_status = false;
  for (int s : rc.statuses) retry_status = retry_status || s == status;
  if (retry_status && attempt_ < rc.attempts) {
    // Drop this answer (and its connection: its body is unread) and try again.
    release_upstream();
    finish_attempt(false);
    if (try_retry(false)) return;
    // Out of budget: there is no response to forward any more.
    fail_request(status >= 500 ? status : 502, "upstream error\n");
    return;
  }
  if (end_stream) {
    finish_attempt(true);
  } else {
    arm_timer(TimerMode::kIdle, cluster.config().timeouts.idle_ms);
  }
  upgraded_ = status == 101;
  strip_hop_by_hop(resp.headers, upgraded_);
  response_sent_ = true;
  ctx_->send_response_headers(end_stream);  // may complete the stream: nothing after this
}

void ClusterHandler::on_response_data(std::string_view data, bool end_stream) {
  if (reset_) return;
  if (end_stream) {
    conn_ = nullptr;  // detached by the codec (pooled or closed)
    finish_attempt(true);
  } else if (!upgraded_) {
    arm_timer(TimerMode::kIdle, wc_->cluster().config().timeouts.idle_ms);
  }
  if (end_stream) {
    ctx_->send_response_data(data, true);  // may complete the stream: nothing after this
    return;
  }
  const pipeline::StreamHandle stream = ctx_->handle();
  ctx_->send_response_data(data, false);
  if (!stream.valid()) return;  // the stream ended inside (a reset): this handler is gone
  if (conn_ != nullptr && ctx_->response_blocked()) {
    // The client is slow, not the upstream: stop reading, and stop the upstream's idle clock
    // until the client drains (on_response_ready), or a slow client would get a healthy
    // endpoint counted as failed.
    conn_->pause_reading();
    if (!upgraded_ && timer_mode_ == TimerMode::kIdle) {
      worker_->loop().timers().cancel(timer_);
      timer_mode_ = TimerMode::kNone;
      idle_paused_ = true;
    }
  }
}

void ClusterHandler::on_response_trailers(const http::HeaderMap& trailers) {
  if (reset_) return;
  conn_ = nullptr;  // detached by the codec (pooled or closed)
  finish_attempt(true);
  http::HeaderMap kept;  // views of the codec's strings, valid during this call
  copy_forwardable_trailers(trailers, kept);
  ctx_->send_response_trailers(kept);  // may complete the stream: nothing after this
}

void ClusterHandler::on_response_ready(pipeline::HandlerContext&) {
  if (conn_ == nullptr) return;
  conn_->resume_reading();
  if (idle_paused_) {
    idle_paused_ = false;
    arm_timer(TimerMode::kIdle, wc_->cluster().config().timeouts.idle_ms);
  }
}

// ---------------------------------------------------------------------------------------------
// Attempts, failures and timers

void ClusterHandler::finish_attempt(bool success) {
  worker_->loop().timers().cancel(timer_);
  timer_mode_ = TimerMode::kNone;
  end_active();
  if (success) {
    wc_->cluster().stats().upstream_latency->observe(worker_->index(),
                                                      now_us() - upstream_start_us_);
  }
}

void ClusterHandler::end_active() {
  if (!attempt_active_) return;
  attempt_active_ = false;
  --wc_->active[ep_->index];
  ep_->active_requests->add(worker_->index(), -1);
}

void ClusterHandler::report_endpoint_failure() {
  wc_->cluster().report_failure(*ep_, worker_->loop().now_ms(), worker_->index(),
                                *worker_->services().log);
}

void ClusterHandler::on_failure(http::UpstreamFailure kind, std::string_view detail) {
  conn_ = nullptr;  // the codec closed it and detached us
  Cluster& cluster = wc_->cluster();
  const size_t w = worker_->index();
  finish_attempt(false);
  const RetryConfig& rc = cluster.config().retry;
  const bool connect_failure = kind == http::UpstreamFailure::kConnectFailure;
  if (connect_failure) cluster.stats().connect_failures->add(w);
  else cluster.stats().rq_class[0]->add(w);
  cluster.stats().errors[static_cast<size_t>(kind)]->add(w);
  // A request body that did not match its own Content-Length is this side's doing (a filter
  // changed it), not the endpoint's.
  if (kind != http::UpstreamFailure::kRequestFraming) report_endpoint_failure();
  // Name the cause, with the endpoint, in the error log and in the access log's termination
  // (the detail is the codec's: valid during this call only, so it is copied).
  std::string_view cause = http::failure_name(kind);
  worker_->services().log->log(observe::LogLevel::kWarn, "cluster %s: endpoint %s: %.*s: %.*s",
                               cluster.name().c_str(), ep_->label.c_str(),
                               static_cast<int>(cause.size()), cause.data(),
                               static_cast<int>(detail.size()), detail.data());
  ctx_->info().termination = ctx_->arena().concat({"upstream ", cause, ": ", detail});
  if (reset_) return;
  if (upgraded_) {
    ctx_->reset_stream();
    return;
  }
  if (!response_sent_) {
    bool eligible = (connect_failure && rc.on_connect_failure) ||
                    (kind == http::UpstreamFailure::kReset && rc.on_reset);
    if (eligible && try_retry(connect_failure)) return;
    if (kind == http::UpstreamFailure::kRequestFraming) {
      fail_request(500, "request body does not match its Content-Length\n");
      return;
    }
    fail_request(502, connect_failure ? "upstream connect failed\n"
                      : kind == http::UpstreamFailure::kProtocolError
                          ? "invalid upstream response\n"
                          : "upstream reset\n");
    return;
  }
  // A truncated response must not look complete: the client sees it cut short, and the
  // request is counted and logged as failed, not as its status.
  ctx_->info().failed = true;
  ctx_->reset_stream();
}

bool ClusterHandler::try_retry(bool connect_failure) {
  Cluster& cluster = wc_->cluster();
  const RetryConfig& rc = cluster.config().retry;
  const http::RequestHead& req = ctx_->request();
  if (attempt_ >= rc.attempts || reset_ || response_sent_) return false;
  // A request body already handed to an upstream cannot be replayed.
  if (body_forwarded_ || req.upgrade) return false;
  if (!connect_failure && !is_safe_method(req.method)) return false;
  if (!counted_retry_ && !wc_->retry_allowed()) {
    cluster.stats().retry_overflow->add(worker_->index());
    return false;
  }
  if (!counted_retry_) {
    counted_retry_ = true;
    ++wc_->active_retries;
  }
  ++attempt_;
  cluster.stats().retries->add(worker_->index());
  // Exponential backoff with full jitter.
  uint64_t cap = rc.backoff_base_ms << (attempt_ - 1 < 16 ? attempt_ - 1 : 16);
  if (cap > rc.backoff_max_ms) cap = rc.backoff_max_ms;
  uint64_t delay = cap == 0 ? 0 : worker_->rng().below(static_cast<uint32_t>(cap) + 1);
  if (delay == 0) {
    send_attempt();
  } else {
    arm_timer(TimerMode::kBackoff, delay);
  }
  return true;
}

void ClusterHandler::fail_request(int status, std::string_view body) {
  if (response_sent_) {
    ctx_->reset_stream();
    return;
  }
  ctx_->send_local_reply(status, body);
}

void ClusterHandler::arm_timer(TimerMode mode, uint64_t ms) {
  timer_mode_ = mode;
  if (ms == 0) {
    worker_->loop().timers().cancel(timer_);
    return;
  }
  worker_->loop().arm(timer_, ms);
}

void ClusterHandler::on_timer(void* arg) {
  auto* h = static_cast<ClusterHandler*>(arg);
  TimerMode mode = h->timer_mode_;
  h->timer_mode_ = TimerMode::kNone;
  if (h->reset_) return;
  if (mode == TimerMode::kBackoff) {
    h->send_attempt();
    return;
  }
  Cluster& cluster = h->wc_->cluster();
  if (mode == TimerMode::kPoolWait) {
    // No connection came free in time: the cluster is at its limits, not the endpoint at fault.
    h->wc_->cancel(*h);
    h->queued_ = false;
    cluster.stats().pool_wait_timeouts->add(h->worker_->index());
    h->ctx_->info().termination = "upstream overflow: no connection within the connect timeout";
    h->fail_request(503, "upstream overflow\n");
    return;
  }
  cluster.stats().timeouts->add(h->worker_->index());
  h->release_upstream();
  h->finish_attempt(false);
  std::string_view why = mode == TimerMode::kConnect    ? "upstream connect timeout"
                         : mode == TimerMode::kResponse ? "upstream response timeout"
                                                        : "upstream idle timeout";
  h->ctx_->info().termination = why;
  // Idle while the request body is still coming is the client's pause, not the endpoint's.
  const bool endpoint_at_fault = !(mode == TimerMode::kIdle && !h->request_sent_);
  if (h->ep_ != nullptr && endpoint_at_fault) {
    h->report_endpoint_failure();
    h->worker_->services().log->log(observe::LogLevel::kWarn, "cluster %s: endpoint %s: %s",
                                    cluster.name().c_str(), h->ep_->label.c_str(), why.data());
  }
  if (mode == TimerMode::kConnect && cluster.config().retry.on_connect_failure &&
      h->try_retry(true)) {
    return;
  }
  if (mode == TimerMode::kResponse) {
    bool retry_504 = false;
    for (int st : cluster.config().retry.statuses) retry_504 = retry_504 || st == 504;
    if (retry_504 && h->try_retry(false)) return;
  }
  if (h->upgraded_ || h->response_sent_) {
    h->ctx_->reset_stream();
    return;
  }
  h->ctx_->send_local_reply(504, "upstream timeout\n");
}

void ClusterHandler::release_upstream() {
  if (worker_ != nullptr) worker_->loop().timers().cancel(timer_);
  if (queued_) {
    wc_->cancel(*this);
    queued_ = false;
  }
  if (conn_ != nullptr) {
    conn_->detach();
    conn_->close();  // mid-exchange: never reusable
    conn_ = nullptr;
    end_active();
  }
}

void ClusterHandler::on_reset() {
  reset_ = true;
  release_upstream();
}

}  // namespace citadel::proxy
