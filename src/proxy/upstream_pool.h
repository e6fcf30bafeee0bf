// Per-worker upstream state of one cluster: its load balancer over the currently usable
// endpoints, and a keep-alive connection pool per endpoint. Worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/http1/client_connection.h"
#include "proxy/cluster.h"
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {

class EndpointPool final : public http::http1::ClientOwner {
 public:
  EndpointPool(core::EventLoop& loop, core::BlockPool& blocks, Endpoint& ep,
               const PoolConfig& config, ClusterStats& stats, size_t worker)
      : loop_(loop), blocks_(blocks), ep_(ep), config_(config), stats_(stats), worker_(worker) {}
  ~EndpointPool();

  // An idle keep-alive connection, or a new one (still connecting). nullptr when the socket
  // could not be created.
  http::http1::ClientConnection* acquire();

  void on_client_idle(http::http1::ClientConnection& c) override;
  void on_client_closed(http::http1::ClientConnection& c) override;

 private:
  core::EventLoop& loop_;
  core::BlockPool& blocks_;
  Endpoint& ep_;
  const PoolConfig& config_;
  ClusterStats& stats_;
  size_t worker_;
  std::vector<http::http1::ClientConnection*> idle_;  // most recently used last
};

class WorkerCluster {
 public:
  WorkerCluster(Cluster& cluster, core::EventLoop& loop, core::BlockPool& blocks, size_t worker,
                uint64_t seed);

  // Chooses an endpoint for one attempt, honouring health, ejections and panic mode.
  Endpoint* pick(LbContext& ctx, uint64_t now_ms);
  EndpointPool& pool(const Endpoint& e) { return *pools_[e.index]; }
  Cluster& cluster() { return cluster_; }

  // Per-worker accounting for least_request and the retry budget.
  std::vector<uint32_t> active;  // by endpoint index
  uint32_t active_requests = 0;
  uint32_t active_retries = 0;

  bool retry_allowed() const {
    const RetryConfig& r = cluster_.config().retry;
    uint64_t budget = static_cast<uint64_t>(active_requests) * r.budget_percent / 100;
    if (budget < r.min_retry_concurrency) budget = r.min_retry_concurrency;
    return active_retries < budget;
  }

 private:
  void refresh(uint64_t now_ms);

  Cluster& cluster_;
  std::unique_ptr<LoadBalancer> lb_;
  std::vector<std::unique_ptr<EndpointPool>> pools_;
  uint64_t seen_generation_ = 0;
  uint64_t recheck_at_ms_ = 0;  // earliest ejection expiry in the current host list
  bool empty_ = true;
};

}  // namespace citadel::proxy
