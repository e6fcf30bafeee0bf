#include "proxy/upstream_pool.h"

#include <algorithm>

namespace citadel::proxy {

EndpointPool::~EndpointPool() {
  // Closing calls back into on_client_closed, which edits idle_: work on a copy.
  auto idle = idle_;
  for (auto* c : idle) c->close();
}

http::http1::ClientConnection* EndpointPool::acquire() {
  while (!idle_.empty()) {
    auto* c = idle_.back();
    idle_.pop_back();
    loop_.timers().cancel(c->idle_timer);
    if (!c->closed()) return c;
  }
  auto* c = new http::http1::ClientConnection(loop_, blocks_, *this);
  if (!c->connect(reinterpret_cast<const sockaddr*>(&ep_.addr), ep_.addr_len)) {
    delete c;
    return nullptr;
  }
  stats_.cx_total->add(worker_);
  return c;
}

void EndpointPool::on_client_idle(http::http1::ClientConnection& c) {
  if (idle_.size() >= config_.max_idle) {
    c.close();
    return;
  }
  idle_.push_back(&c);
  loop_.arm(c.idle_timer, config_.idle_timeout_ms);
}

void EndpointPool::on_client_closed(http::http1::ClientConnection& c) {
  auto it = std::find(idle_.begin(), idle_.end(), &c);
  if (it != idle_.end()) idle_.erase(it);
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
}

WorkerCluster::WorkerCluster(Cluster& cluster, core::EventLoop& loop, core::BlockPool& blocks,
                             size_t worker, uint64_t seed)
    : cluster_(cluster), lb_(make_load_balancer(cluster.config().lb, seed)) {
  for (const auto& e : cluster.endpoints()) {
    pools_.push_back(std::make_unique<EndpointPool>(loop, blocks, *e, cluster.config().pool,
                                                    cluster.stats(), worker));
  }
  active.assign(cluster.endpoints().size(), 0);
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
