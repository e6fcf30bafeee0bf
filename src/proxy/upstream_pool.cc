#include "proxy/upstream_pool.h"

#include <algorithm>

namespace citadel::proxy {

EndpointPool::~EndpointPool() {
  // Closing calls back into on_client_closed, which edits idle_: work on a copy.
  auto idle = idle_;
  for (auto* c : idle) c->close();
  auto h2 = h2_;
  for (auto* c : h2) c->close();
}

http::UpstreamStream* EndpointPool::take_idle() {
  if (owner_.cluster().config().h2) {
    // The newest connection with room first: streams gather on few connections, and the older
    // ones empty out and close when the load drops.
    for (auto it = h2_.rbegin(); it != h2_.rend(); ++it) {
      if ((*it)->can_open()) return (*it)->open_stream();
    }
    return nullptr;
  }
  while (!idle_.empty()) {
    auto* c = idle_.back();
    idle_.pop_back();
    loop_.timers().cancel(c->idle_timer);
    if (!c->closed()) return c;
  }
  return nullptr;
}

http::UpstreamStream* EndpointPool::connect_new() {
  if (owner_.cluster().config().h2) {
    auto* c = owner_.cluster().connect_h2(ep_, loop_, blocks_, *this);
    if (c == nullptr) return nullptr;
    h2_.push_back(c);
    owner_.on_connection_opened();
    stats_.cx_total->add(worker_);
    return c->open_stream();
  }
  auto* c = owner_.cluster().connect(ep_, loop_, blocks_, *this);
  if (c == nullptr) return nullptr;
  owner_.on_connection_opened();
  stats_.cx_total->add(worker_);
  return c;
}

bool EndpointPool::close_oldest_idle() {
  for (auto* c : h2_) {
    if (c->streams() == 0) {
      c->close();  // on_h2_closed takes it out of h2_
      return true;
    }
  }
  if (idle_.empty()) return false;
  idle_.front()->close();  // on_client_closed takes it out of idle_
  return true;
}

void EndpointPool::on_client_idle(http::http1::ClientConnection& c) {
  if (idle_.size() >= config_.max_idle) {
    c.close();
    return;
  }
  idle_.push_back(&c);
  loop_.arm(c.idle_timer, config_.idle_timeout_ms);
  owner_.on_connection_idle();
}

void EndpointPool::on_h2_capacity(http::http2::ClientConnection& c) {
  if (c.streams() == 0) loop_.arm(c.idle_timer, config_.idle_timeout_ms);
  owner_.on_connection_idle();  // waiters may take a stream on it
}

void EndpointPool::on_h2_closed(http::http2::ClientConnection& c) {
  auto it = std::find(h2_.begin(), h2_.end(), &c);
  if (it != h2_.end()) h2_.erase(it);
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
  owner_.on_connection_closed();
}

void EndpointPool::on_client_closed(http::http1::ClientConnection& c) {
  auto it = std::find(idle_.begin(), idle_.end(), &c);
  if (it != idle_.end()) idle_.erase(it);
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
  owner_.on_connection_closed();
}

namespace {

uint32_t share(uint32_t limit, size_t workers) {
  if (workers <= 1) return limit;
  return static_cast<uint32_t>((limit + workers - 1) / workers);
}

}  // namespace

WorkerCluster::WorkerCluster(Cluster& cluster, core::EventLoop& loop, core::BlockPool& blocks,
                             size_t worker, size_t workers, uint64_t seed)
    : cluster_(cluster),
      lb_(make_load_balancer(cluster.config().lb, seed)),
      max_connections_(share(cluster.config().limits.max_connections, workers)),
      max_pending_(share(cluster.config().limits.max_pending, workers)),
      max_requests_(share(cluster.config().limits.max_requests, workers)),
      loop_(loop),
      wake_timer_(&WorkerCluster::on_wake, this) {
  if (cluster.config().limits.max_pending == 0) max_pending_ = 0;
  for (const auto& e : cluster.endpoints()) {
    pools_.push_back(std::make_unique<EndpointPool>(*this, loop, blocks, *e, cluster.config().pool,
                                                    cluster.stats(), worker));
  }
  active.assign(cluster.endpoints().size(), 0);
}

WorkerCluster::~WorkerCluster() {
  // Pools close their idle connections, which reports back here: the counters are not read
  // any more, and the timer unlinks itself.
  head_ = tail_ = nullptr;
  pools_.clear();
}

WorkerCluster::Acquire WorkerCluster::acquire(Endpoint& e, PoolWaiter& waiter,
                                              http::UpstreamStream*& stream) {
  EndpointPool& p = pool(e);
  // First come, first served: requests already waiting at the limit go before this one, for a
  // connection of their endpoint and for a free slot (they are served from a timer, so a
  // newcomer in between would otherwise take what freed up).
  bool waiting_here = false;
  for (PoolWaiter* w = head_; w != nullptr && !waiting_here; w = w->next_) {
    waiting_here = w->endpoint_ == &e;
  }
  http::UpstreamStream* conn = waiting_here ? nullptr : p.take_idle();
  stream = conn;
  if (conn != nullptr) return Acquire::kReady;
  // At the limit, an idle connection of another endpoint makes room for this one.
  if (connections_ >= max_connections_ && head_ == nullptr) close_some_idle();
  if (connections_ < max_connections_ && head_ == nullptr) {
    conn = p.connect_new();
    stream = conn;
    return conn != nullptr ? Acquire::kReady : Acquire::kFailed;
  }
  if (pending_ >= max_pending_) return Acquire::kOverflow;
  waiter.endpoint_ = &e;
  waiter.queued_ = true;
  waiter.prev_ = tail_;
  waiter.next_ = nullptr;
  if (tail_ != nullptr) tail_->next_ = &waiter;
  else head_ = &waiter;
  tail_ = &waiter;
  ++pending_;
  return Acquire::kQueued;
}

void WorkerCluster::unlink(PoolWaiter& w) {
  if (!w.queued_) return;
  if (w.prev_ != nullptr) w.prev_->next_ = w.next_;
  else head_ = w.next_;
  if (w.next_ != nullptr) w.next_->prev_ = w.prev_;
  else tail_ = w.prev_;
  w.prev_ = w.next_ = nullptr;
  w.queued_ = false;
  --pending_;
}

void WorkerCluster::cancel(PoolWaiter& waiter) { unlink(waiter); }

bool WorkerCluster::close_some_idle() {
  for (auto& p : pools_) {
    if (p->close_oldest_idle()) return true;
  }
  return false;
}

void WorkerCluster::on_connection_closed() {
  if (connections_ > 0) --connections_;
  wake_waiters();
}

void WorkerCluster::wake_waiters() {
  // Served from a timer: a connection that goes idle or closes does so inside its own
  // callbacks, where handing it to another request would run that request's code mid-exchange.
  if (head_ != nullptr && !wake_timer_.armed()) loop_.arm(wake_timer_, 0);
}

void WorkerCluster::on_wake(void* self) { static_cast<WorkerCluster*>(self)->serve_waiters(); }

void WorkerCluster::serve_waiters() {
  // Each waiter gets an idle connection to its endpoint or, below the limit, a new one; the
  // first that can get neither keeps its place (FIFO) and the rest wait behind it.
  while (head_ != nullptr) {
    PoolWaiter& w = *head_;
    EndpointPool& p = pool(*w.endpoint_);
    http::UpstreamStream* c = p.take_idle();
    if (c == nullptr) {
      if (connections_ >= max_connections_) close_some_idle();
      if (connections_ >= max_connections_) return;
      c = p.connect_new();
      if (c == nullptr) return;  // out of sockets: the waiter's own timeout answers
    }
    unlink(w);
    w.on_pool_ready(*c);
  }
}

void WorkerCluster::refresh(uint64_t now_ms) {
  seen_generation_ = cluster_.generation();
  recheck_at_ms_ = UINT64_MAX;
  std::vector<Endpoint*> usable;
  std::vector<Endpoint*> all;
  for (const auto& e : cluster_.endpoints()) {
    all.push_back(e.get());
    if (e->usable(now_ms)) {
      usable.push_back(e.get());
    } else {
      uint64_t until = e->ejected_until_ms.load(std::memory_order_relaxed);
      if (until > now_ms && until < recheck_at_ms_) recheck_at_ms_ = until;
    }
  }
  // Panic mode: with too few usable endpoints, spread over all of them rather than overload
  // the survivors (Envoy's healthy_panic_threshold).
  const uint32_t panic = cluster_.config().panic_threshold_percent;
  if (panic > 0 && usable.size() * 100 < all.size() * panic) usable = all;
  empty_ = usable.empty();
  lb_->update(usable);
}

Endpoint* WorkerCluster::pick(LbContext& ctx, uint64_t now_ms) {
  if (cluster_.generation() != seen_generation_ || now_ms >= recheck_at_ms_) refresh(now_ms);
  if (empty_) return nullptr;
  ctx.active = &active;
  return lb_->pick(ctx);
}

}  // namespace citadel::proxy
