#include "proxy/cluster.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

namespace citadel::proxy {

namespace {

struct Resolved {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

bool is_ip_literal(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Blocking lookup: runs on the control thread (config load, reload, DNS refresh).
core::Result<Resolved> resolve(const HostPort& hp) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return core::Status::error("cannot resolve " + hp.text() + ": " + gai_strerror(rc));
  }
  // One address per endpoint: the first IPv4 one when there is one (a name such as localhost
  // often lists ::1 first while services listen on IPv4 only), else the first.
  const addrinfo* pick = res;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  Resolved r;
  std::memcpy(&r.addr, pick->ai_addr, pick->ai_addrlen);
  r.len = pick->ai_addrlen;
  freeaddrinfo(res);
  return r;
}

}  // namespace

bool Cluster::addresses_match(const ClusterConfig& config) const {
  if (config.endpoints.size() != endpoints_.size()) return false;
  if (!has_dns_names_) return true;  // IP literals: the fingerprint already compares them
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    auto r = resolve(config.endpoints[i].address);
    if (!r.ok() || r.value().len != endpoints_[i]->addr_len ||
        std::memcmp(&r.value().addr, &endpoints_[i]->addr, r.value().len) != 0) {
      return false;
    }
  }
  return true;
}

Cluster::Cluster(const ClusterConfig& config, size_t workers)
    : config_(config), worker_state_(workers + 1, nullptr) {}

Cluster::~Cluster() = default;

core::Result<std::shared_ptr<Cluster>> Cluster::create(const ClusterConfig& config, size_t workers,
                                                       observe::Registry& metrics) {
  std::shared_ptr<Cluster> c(new Cluster(config, workers));
  for (size_t i = 0; i < config.endpoints.size(); ++i) {
    const EndpointConfig& ec = config.endpoints[i];
    auto e = std::make_unique<Endpoint>();
    e->index = i;
    e->label = ec.address.text();
    e->host_header = e->label;
    e->weight = ec.weight;
    auto resolved = resolve(ec.address);
    if (!resolved.ok()) {
      return core::Status::error("cluster " + config.name + ": " + resolved.error().message());
    }
    e->addr = resolved.value().addr;
    e->addr_len = resolved.value().len;
    if (!is_ip_literal(ec.address.host)) c->has_dns_names_ = true;
    c->endpoints_.push_back(std::move(e));
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
