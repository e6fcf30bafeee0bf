#include "proxy/cluster.h"

#include <cerrno>
#include <map>

namespace citadel::proxy {

bool Cluster::addresses_match(const ClusterConfig& config, const LookupFn& lookup) const {
  if (config.endpoints.size() != resolved_.size()) return false;
  if (!has_dns_names_) return true;  // IP literals: the fingerprint already compares them
  for (size_t i = 0; i < resolved_.size(); ++i) {
    auto r = lookup(config.endpoints[i].address, config.dns_family);
    if (!r.ok() || r.value() != resolved_[i]) return false;
  }
  return true;
}

Cluster::Cluster(const ClusterConfig& config, size_t workers)
    : config_(config), worker_state_(workers + 1, nullptr) {}

Cluster::~Cluster() = default;

SSL* Cluster::client_ssl(const Endpoint& e) const {
  const UpstreamTlsConfig& t = *config_.tls;
  // The name sent and verified: the configured sni, else the endpoint's host; an IP literal is
  // verified against the certificate's addresses and never sent as SNI (RFC 6066, 3).
  const std::string& name = t.sni.empty() ? e.host : t.sni;
  std::string_view sni = is_ip_literal(name) ? std::string_view() : std::string_view(name);
  SSL* ssl = tls_->new_ssl(name, sni, e.label);
  if (ssl == nullptr) errno = ENOMEM;
  return ssl;
}

http::http1::ClientConnection* Cluster::connect(const Endpoint& e, core::EventLoop& loop,
                                                core::BlockPool& blocks,
                                                http::http1::ClientOwner& owner) const {
  const auto* addr = reinterpret_cast<const sockaddr*>(&e.addr);
  if (tls_ == nullptr) return http::http1::connect_plain(addr, e.addr_len, loop, blocks, owner);
  SSL* ssl = client_ssl(e);
  if (ssl == nullptr) return nullptr;
  return http::http1::connect_tls(addr, e.addr_len, ssl, loop, blocks, owner);
}

http::http2::ClientConnection* Cluster::connect_h2(const Endpoint& e, core::EventLoop& loop,
                                                   core::BlockPool& blocks,
                                                   http::http2::ClientOwner& owner) const {
  SSL* ssl = nullptr;
  if (tls_ != nullptr && (ssl = client_ssl(e)) == nullptr) return nullptr;
  return http::http2::connect(reinterpret_cast<const sockaddr*>(&e.addr), e.addr_len, ssl, loop,
                              blocks, owner);
}

core::Result<std::shared_ptr<Cluster>> Cluster::create(const ClusterConfig& config, size_t workers,
                                                       observe::Registry& metrics,
                                                       const LookupFn& lookup,
                                                       const Cluster* previous) {
  std::shared_ptr<Cluster> c(new Cluster(config, workers));
  std::map<std::string, const Endpoint*> before;
  if (previous != nullptr) {
    for (const auto& e : previous->endpoints_) before.emplace(e->label, e.get());
  }
  const bool keep_health = previous != nullptr && previous->config_.health.enabled &&
                           config.health.enabled;
  const bool keep_ejection = previous != nullptr && previous->config_.outlier.enabled &&
                             config.outlier.enabled;
  for (const EndpointConfig& ec : config.endpoints) {
    auto resolved = lookup(ec.address, config.dns_family);
    if (!resolved.ok()) {
      return core::Status::error("cluster " + config.name + ": " + resolved.error().message());
    }
    const bool name = !is_ip_literal(ec.address.host);
    c->has_dns_names_ = c->has_dns_names_ || name;
    for (const Address& a : resolved.value()) {
      auto e = std::make_unique<Endpoint>();
      e->index = c->endpoints_.size();
      e->label = name ? ec.address.text() + " (" + a.ip() + ")" : ec.address.text();
      e->host_header = ec.address.text();
      e->host = ec.address.host;
      e->weight = ec.weight;
      e->addr = a.addr;
      e->addr_len = a.len;
      auto old = before.find(e->label);
      if (old != before.end()) {
        if (keep_health) e->hc_healthy.store(old->second->hc_healthy.load());
        if (keep_ejection) {
          e->ejected_until_ms.store(old->second->ejected_until_ms.load());
          e->ejection_count.store(old->second->ejection_count.load());
        }
      }
      c->endpoints_.push_back(std::move(e));
    }
    c->resolved_.push_back(std::move(resolved.value()));
  }
  if (config.tls) {
    auto ctx = http::TlsClientContext::create(upstream_tls_options(*config.tls, config.h2));
    if (!ctx.ok()) {
      return core::Status::error("cluster " + config.name + ": " + ctx.error().message());
    }
    c->tls_ = std::move(ctx.value());
  }
  const std::string l = "cluster=\"" + config.name + "\"";
  for (auto& e : c->endpoints_) {
    e->active_requests = metrics.gauge("citadel_upstream_active_requests",
                                       "Requests in flight to an endpoint",
                                       l + ",endpoint=\"" + e->label + "\"");
  }
  static const char* kClass[] = {"reset", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (int i = 0; i < 6; ++i) {
    c->stats_.rq_class[i] =
        metrics.counter("citadel_upstream_requests_total",
                        "Upstream request attempts by cluster and status class",
                        l + ",class=\"" + kClass[i] + "\"");
  }
  c->stats_.retries = metrics.counter("citadel_upstream_retries_total", "Retries sent", l);
  c->stats_.retry_overflow = metrics.counter("citadel_upstream_retry_overflow_total",
                                             "Retries refused by the retry budget", l);
  c->stats_.connect_failures = metrics.counter("citadel_upstream_connect_failures_total",
                                               "Failed upstream connects", l);
  for (size_t i = 0; i < http::kUpstreamFailureKinds; ++i) {
    auto kind = static_cast<http::UpstreamFailure>(i);
    c->stats_.errors[i] = metrics.counter(
        "citadel_upstream_errors_total", "Failed upstream attempts by cause",
        l + ",cause=\"" + std::string(http::failure_name(kind)) + "\"");
  }
  c->stats_.overflow_requests = metrics.counter(
      "citadel_upstream_overflow_total", "Requests refused by the cluster's limits (503)",
      l + ",limit=\"max_requests\"");
  c->stats_.overflow_pending = metrics.counter(
      "citadel_upstream_overflow_total", "Requests refused by the cluster's limits (503)",
      l + ",limit=\"max_pending\"");
  c->stats_.pool_wait_timeouts = metrics.counter(
      "citadel_upstream_overflow_total", "Requests refused by the cluster's limits (503)",
      l + ",limit=\"pending_timeout\"");
  c->stats_.timeouts = metrics.counter("citadel_upstream_timeouts_total",
                                       "Upstream connect or response timeouts", l);
  c->stats_.no_healthy = metrics.counter("citadel_upstream_no_healthy_total",
                                         "Requests answered 503: no usable endpoint", l);
  c->stats_.ejections = metrics.counter("citadel_upstream_ejections_total",
                                        "Outlier ejections", l);
  c->stats_.cx_total = metrics.counter("citadel_upstream_connections_total",
                                       "Upstream connections opened", l);
  c->stats_.upstream_latency = metrics.histogram(
      "citadel_upstream_latency_seconds", "Upstream time to last response byte", l);
  return c;
}

uint32_t Cluster::ejected_now(uint64_t now_ms) const {
  uint32_t n = 0;
  for (const auto& e : endpoints_) {
    n += e->ejected_until_ms.load(std::memory_order_relaxed) > now_ms ? 1 : 0;
  }
  return n;
}

bool Cluster::report_failure(Endpoint& e, uint64_t now_ms, size_t worker,
                             observe::ErrorLog& log) {
  if (!config_.outlier.enabled) return false;
  uint32_t n = e.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n < config_.outlier.consecutive_failures) return false;
  std::lock_guard<std::mutex> lock(eject_mu_);
  if (e.ejected_until_ms.load(std::memory_order_relaxed) > now_ms) return false;
  uint32_t ejected = ejected_now(now_ms);
  uint64_t max_ejected =
      endpoints_.size() * static_cast<uint64_t>(config_.outlier.max_ejection_percent) / 100;
  if (ejected + 1 > max_ejected) return false;
  uint32_t count = e.ejection_count.fetch_add(1, std::memory_order_relaxed) + 1;
  uint64_t duration = config_.outlier.base_ejection_ms * count;
  if (duration > config_.outlier.max_ejection_ms) duration = config_.outlier.max_ejection_ms;
  e.ejected_until_ms.store(now_ms + duration, std::memory_order_relaxed);
  e.consecutive_failures.store(0, std::memory_order_relaxed);
  stats_.ejections->add(worker);
  bump_generation();
  log.log(observe::LogLevel::kWarn, "cluster %s: endpoint %s ejected for %llums (%u failures)",
          config_.name.c_str(), e.label.c_str(), static_cast<unsigned long long>(duration), n);
  return true;
}

}  // namespace citadel::proxy
