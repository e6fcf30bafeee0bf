// Per-worker upstream state of one cluster: its load balancer over the currently usable
// endpoints, and a keep-alive connection pool per endpoint. Worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/timer_wheel.h"
#include "http/http1/client_connection.h"
#include "http/http2/client_connection.h"
#include "proxy/cluster.h"
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {

class WorkerCluster;

// A request waiting for a connection of its cluster (the cluster is at max_connections).
// Intrusive: the waiter lives in the request's arena and unlinks itself (WorkerCluster::cancel)
// before it goes.
class PoolWaiter {
 public:
  // An upstream stream for the waiter's endpoint (an idle connection, or a new one still
  // connecting), now owned by the waiter; the waiter has left the queue.
  virtual void on_pool_ready(http::UpstreamStream& stream) = 0;

 protected:
  ~PoolWaiter() = default;

 private:
  friend class WorkerCluster;
  PoolWaiter* prev_ = nullptr;
  PoolWaiter* next_ = nullptr;
  Endpoint* endpoint_ = nullptr;
  bool queued_ = false;
};

// HTTP/1.1 endpoints: one exchange per connection, idle keep-alive connections reused (most
// recently used first). HTTP/2 endpoints (protocol: h2): streams opened on a connection while it
// has room under the server's stream limit; a connection counts once toward max_connections
// however many streams it carries, and closes after idle_timeout without streams. Either way
// the pool hands out http::UpstreamStream, the seam ClusterHandler drives.
class EndpointPool final : public http::http1::ClientOwner, public http::http2::ClientOwner {
 public:
  EndpointPool(WorkerCluster& owner, core::EventLoop& loop, core::BlockPool& blocks, Endpoint& ep,
               const PoolConfig& config, ClusterStats& stats, size_t worker)
      : owner_(owner), loop_(loop), blocks_(blocks), ep_(ep), config_(config), stats_(stats),
        worker_(worker) {}
  ~EndpointPool();

  // A stream on an existing connection: the most recently used idle keep-alive connection, or
  // a stream on an HTTP/2 connection with room; nullptr when there is none.
  http::UpstreamStream* take_idle();
  // A stream on a new connection (still connecting), or nullptr when the socket could not be
  // created.
  http::UpstreamStream* connect_new();
  // Closes the least recently used idle connection; false when there is none.
  bool close_oldest_idle();

  void on_client_idle(http::http1::ClientConnection& c) override;
  void on_client_closed(http::http1::ClientConnection& c) override;
  void on_h2_capacity(http::http2::ClientConnection& c) override;
  void on_h2_closed(http::http2::ClientConnection& c) override;

 private:
  WorkerCluster& owner_;
  core::EventLoop& loop_;
  core::BlockPool& blocks_;
  Endpoint& ep_;
  const PoolConfig& config_;
  ClusterStats& stats_;
  size_t worker_;
  std::vector<http::http1::ClientConnection*> idle_;  // most recently used last
  std::vector<http::http2::ClientConnection*> h2_;    // open HTTP/2 connections, oldest first
};

class WorkerCluster {
 public:
  // `workers`: how many workers share the cluster's limits.
  WorkerCluster(Cluster& cluster, core::EventLoop& loop, core::BlockPool& blocks, size_t worker,
                size_t workers, uint64_t seed);
  ~WorkerCluster();

  // Chooses an endpoint for one attempt, honouring health, ejections and panic mode.
  Endpoint* pick(LbContext& ctx, uint64_t now_ms);
  EndpointPool& pool(const Endpoint& e) { return *pools_[e.index]; }
  Cluster& cluster() { return cluster_; }

  enum class Acquire { kReady, kQueued, kOverflow, kFailed };
  // A connection to `e` for `waiter`: an idle one or a new one (kReady, in `conn`); at
  // max_connections the waiter queues (kQueued: on_pool_ready() follows, or cancel()) unless
  // max_pending waiters wait already (kOverflow); kFailed: no socket could be created.
  Acquire acquire(Endpoint& e, PoolWaiter& waiter, http::UpstreamStream*& stream);
  // Takes `waiter` out of the queue (a timeout, a reset).
  void cancel(PoolWaiter& waiter);
  // False when one more request would pass max_requests (this worker's share).
  bool admit_request() const { return active_requests < max_requests_; }

  // Pool bookkeeping, for EndpointPool.
  void on_connection_opened() { ++connections_; }
  void on_connection_closed();
  // A connection went back to a pool: waiters may be served (on the next timer tick, never
  // from inside the connection's own callbacks).
  void on_connection_idle() { wake_waiters(); }

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
  uint32_t connections() const { return connections_; }
  uint32_t pending() const { return pending_; }

 private:
  void refresh(uint64_t now_ms);
  void unlink(PoolWaiter& w);
  // Frees a connection slot by closing an idle connection of any endpoint.
  bool close_some_idle();
  void wake_waiters();
  static void on_wake(void* self);
  void serve_waiters();

  Cluster& cluster_;
  std::unique_ptr<LoadBalancer> lb_;
  std::vector<std::unique_ptr<EndpointPool>> pools_;
  uint64_t seen_generation_ = 0;
  uint64_t recheck_at_ms_ = 0;  // earliest ejection expiry in the current host list
  bool empty_ = true;
  uint32_t max_connections_;
  uint32_t max_pending_;
  uint32_t max_requests_;
  uint32_t connections_ = 0;
  uint32_t pending_ = 0;
  PoolWaiter* head_ = nullptr;  // FIFO of waiters
  PoolWaiter* tail_ = nullptr;
  core::EventLoop& loop_;
  core::Timer wake_timer_;
};

}  // namespace citadel::proxy
