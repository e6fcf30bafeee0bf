#include "proxy/health_checker.h"

#include <set>

#include "http/http1/client_connection.h"
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {

class HealthChecker::Probe final : public http::http1::ClientCallbacks,
                                   public http::http1::ClientOwner {
 public:
  Probe(core::EventLoop& loop, core::BlockPool& blocks, observe::ErrorLog& log, Cluster& cluster,
        Endpoint& ep)
      : loop_(loop),
        blocks_(blocks),
        log_(log),
        cluster_(cluster),
        ep_(ep),
        state_(cluster.config().health.healthy, cluster.config().health.unhealthy,
               ep.hc_healthy.load()),
        interval_timer_(&Probe::on_interval, this),
        timeout_timer_(&Probe::on_timeout, this) {
    // Spread the first probes over the interval so that many endpoints do not probe at once.
    uint64_t interval = cluster.config().health.interval_ms;
    loop_.arm(interval_timer_, 1 + (stable_hash(ep.label) % (interval / 4 + 1)));
  }
  ~Probe() { abandon(); }

  // ClientCallbacks
  http::ResponseHead& response_head() override { return head_; }
  core::Arena& arena() override { return arena_; }
  void on_connected() override {}
  void on_informational(const http::ResponseHead&) override {}
  void on_response_headers(bool end_stream) override {
    int status = head_.status;
    bool ok = false;
    for (auto [lo, hi] : cluster_.config().health.expected) ok = ok || (status >= lo && status <= hi);
    if (end_stream) conn_ = nullptr;
    if (!ok) {
      verdict(false, "status " + std::to_string(status));
      return;
    }
    if (end_stream) verdict(true, "");
    else passed_ = true;  // wait for the end of the body, then close
  }
  void on_response_data(std::string_view, bool end_stream) override {
    if (end_stream) {
      conn_ = nullptr;
      verdict(passed_, "");
    }
  }
  void on_upstream_write_ready() override {}
  void on_failure(http::http1::ClientFailure, std::string_view detail) override {
    conn_ = nullptr;
    verdict(false, std::string(detail));
  }
  // ClientOwner: probe connections are never reused.
  void on_client_idle(http::http1::ClientConnection& c) override { c.close(); }
  void on_client_closed(http::http1::ClientConnection& c) override {
    if (conn_ == &c) conn_ = nullptr;
    loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
  }

 private:
  static void on_interval(void* arg) { static_cast<Probe*>(arg)->start(); }
  static void on_timeout(void* arg) {
    auto* p = static_cast<Probe*>(arg);
    p->verdict(false, "timeout");
  }

  void start() {
    const HealthCheckConfig& hc = cluster_.config().health;
    loop_.arm(interval_timer_, hc.interval_ms);
    if (in_flight_) return;
    in_flight_ = true;
    passed_ = false;
    arena_.reset();
    head_.reset();
    conn_ = cluster_.connect(ep_, loop_, blocks_, *this);
    if (conn_ == nullptr) {
      verdict(false, "socket");
      return;
    }
    conn_->attach(this);
    req_.reset();
    req_.method = "GET";
    req_.is_head = false;
    req_.headers.add("Host", hc.host.empty() ? std::string_view(ep_.host_header)
                                             : std::string_view(hc.host));
    req_.headers.add("User-Agent", "citadel-health-check");
    req_.headers.add("Connection", "close");
    conn_->send_head(req_, hc.path);
    loop_.arm(timeout_timer_, hc.timeout_ms);
  }

  void abandon() {
    loop_.timers().cancel(timeout_timer_);
    if (conn_ != nullptr) {
      conn_->detach();
      conn_->close();
      conn_ = nullptr;
    }
  }

  void verdict(bool ok, const std::string& why) {
    if (!in_flight_) return;
    in_flight_ = false;
    abandon();
    switch (state_.record(ok)) {
      case HealthState::Change::kBecameHealthy:
        ep_.hc_healthy.store(true);
        cluster_.bump_generation();
        log_.log(observe::LogLevel::kInfo, "cluster %s: endpoint %s is healthy",
                 cluster_.name().c_str(), ep_.label.c_str());
        break;
      case HealthState::Change::kBecameUnhealthy:
        ep_.hc_healthy.store(false);
        cluster_.bump_generation();
        log_.log(observe::LogLevel::kWarn, "cluster %s: endpoint %s is unhealthy (%s)",
                 cluster_.name().c_str(), ep_.label.c_str(), why.c_str());
        break;
      case HealthState::Change::kNone:
        break;
    }
  }

  core::EventLoop& loop_;
  core::BlockPool& blocks_;
  observe::ErrorLog& log_;
  Cluster& cluster_;
  Endpoint& ep_;
  HealthState state_;
  core::Timer interval_timer_;
  core::Timer timeout_timer_;
  core::Arena arena_{1024};
  http::ResponseHead head_;
  http::RequestHead req_;
  http::http1::ClientConnection* conn_ = nullptr;
  bool in_flight_ = false;
  bool passed_ = false;
};

HealthChecker::HealthChecker(core::EventLoop& loop, observe::ErrorLog& log)
    : loop_(loop), log_(log) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::stop() {
  probes_.clear();
  clusters_.clear();
  loop_.clear_graveyard();
}

void HealthChecker::set_clusters(const std::vector<std::shared_ptr<Cluster>>& clusters) {
  std::set<Cluster*> keep;
  for (const auto& c : clusters) {
    if (!c->config().health.enabled) continue;
    keep.insert(c.get());
    if (probes_.count(c.get())) continue;
    auto& list = probes_[c.get()];
    for (const auto& e : c->endpoints()) {
      list.push_back(std::make_unique<Probe>(loop_, blocks_, log_, *c, *e));
    }
  }
  for (auto it = probes_.begin(); it != probes_.end();) {
    if (keep.count(it->first)) ++it;
    else it = probes_.erase(it);
  }
  clusters_ = clusters;  // keeps probed clusters alive
}

}  // namespace citadel::proxy
