// A cluster: a named set of upstream endpoints with its policies, shared by every worker.
//
// Built on the control thread when a config snapshot is compiled; a reload whose cluster text is
// unchanged reuses the same Cluster so health state survives. Workers keep their own per-cluster
// state (load balancer, connection pools, counters) in WorkerCluster, reached by worker index.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "http/http1/client_connection.h"
#include "http/http2/client_connection.h"
#include "http/transport/tls_context.h"
#include "http/upstream.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "proxy/config.h"
#include "proxy/dns.h"
#include "proxy/endpoint.h"

namespace citadel::proxy {

class WorkerCluster;

struct ClusterStats {
  observe::Counter* rq_class[6] = {};  // by status class 1xx..5xx; [0] = reset / no response
  observe::Counter* retries = nullptr;
  observe::Counter* retry_overflow = nullptr;  // retries refused by the budget
  observe::Counter* connect_failures = nullptr;
  // Failed attempts by cause (http::UpstreamFailure order): connect failure, reset before the
  // response, reset in the body, protocol error.
  observe::Counter* errors[http::kUpstreamFailureKinds] = {};
  // Requests refused or dropped by the cluster's limits: requests in flight at max_requests,
  // the wait queue at max_pending, a wait for a connection that outlasted the connect timeout.
  observe::Counter* overflow_requests = nullptr;
  observe::Counter* overflow_pending = nullptr;
  observe::Counter* pool_wait_timeouts = nullptr;
  observe::Counter* timeouts = nullptr;
  observe::Counter* no_healthy = nullptr;
  observe::Counter* ejections = nullptr;
  observe::Counter* cx_total = nullptr;
  observe::Histogram* upstream_latency = nullptr;
};

class Cluster {
 public:
  // Builds the cluster on the control thread (start-up, reload, DNS refresh). Each configured
  // endpoint becomes one Endpoint per address `lookup` gives for it; a name that does not resolve
  // fails the whole cluster. When `previous` (the cluster of the same name being replaced) has an
  // endpoint with the same label (configured address and resolved IP), its health verdict and
  // ejection state carry over, so that a DNS change or a config edit does not put an endpoint
  // known to be down back into rotation.
  static core::Result<std::shared_ptr<Cluster>> create(const ClusterConfig& config,
                                                       size_t workers,
                                                       observe::Registry& metrics,
                                                       const LookupFn& lookup = lookup_blocking,
                                                       const Cluster* previous = nullptr);
  ~Cluster();

  // True when `lookup` gives exactly the addresses this cluster was built with, for every
  // endpoint of `config` (a DNS change makes a reload or a DNS refresh build a new cluster).
  bool addresses_match(const ClusterConfig& config, const LookupFn& lookup) const;
  // Opens a connection to `e` with its codec, registered with `loop`: TLS when the cluster has
  // `tls:` (verified, with SNI and session resumption), else plain. nullptr (errno set) when no
  // socket could be made.
  http::http1::ClientConnection* connect(const Endpoint& e, core::EventLoop& loop,
                                         core::BlockPool& blocks,
                                         http::http1::ClientOwner& owner) const;
  // An HTTP/2 connection to `e` (protocol: h2), over TLS with ALPN h2 when the cluster has
  // `tls:`, else h2c with prior knowledge. nullptr (errno set) when no socket could be made.
  http::http2::ClientConnection* connect_h2(const Endpoint& e, core::EventLoop& loop,
                                            core::BlockPool& blocks,
                                            http::http2::ClientOwner& owner) const;
  // The cluster's TLS client context; nullptr: plain.
  const http::TlsClientContext* tls() const { return tls_.get(); }

  // True when some endpoint is a DNS name rather than an IP literal.
  bool has_dns_names() const { return has_dns_names_; }

  const ClusterConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  const std::vector<std::unique_ptr<Endpoint>>& endpoints() const { return endpoints_; }
  ClusterStats& stats() { return stats_; }

  // Bumped whenever an endpoint's usability may have changed; workers then rebuild their host
  // lists. Relaxed loads on the request path.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void bump_generation() { generation_.fetch_add(1, std::memory_order_acq_rel); }

  // Passive outlier detection, called by workers after each upstream attempt.
  void report_success(Endpoint& e) {
    if (e.consecutive_failures.load(std::memory_order_relaxed) != 0) {
      e.consecutive_failures.store(0, std::memory_order_relaxed);
    }
  }
  // Returns true when this failure ejected the endpoint.
  bool report_failure(Endpoint& e, uint64_t now_ms, size_t worker, observe::ErrorLog& log);
  // Endpoints currently ejected (for max_ejection_percent).
  uint32_t ejected_now(uint64_t now_ms) const;

  // The worker's own state, created and destroyed by that worker only (Worker::cluster_state),
  // which holds a reference to the cluster meanwhile.
  WorkerCluster*& worker_slot(size_t worker) { return worker_state_[worker]; }

 private:
  Cluster(const ClusterConfig& config, size_t workers);
  // A client SSL for `e` (the cluster has `tls:`): its name verified and sent as SNI, its
  // sessions resumed. nullptr (errno ENOMEM) when none could be made.
  SSL* client_ssl(const Endpoint& e) const;
  ClusterConfig config_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::atomic<uint64_t> generation_{1};
  std::mutex eject_mu_;  // serialises ejection decisions (failure path only)
  ClusterStats stats_;
  std::vector<WorkerCluster*> worker_state_;
  std::vector<std::vector<Address>> resolved_;  // per configured endpoint
  bool has_dns_names_ = false;
  std::shared_ptr<const http::TlsClientContext> tls_;
};

}  // namespace citadel::proxy
