#include "proxy/health_checker.h"

#include <set>

#include "http/http1/client_connection.h"
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {

// One endpoint's probe: a fresh connection per check (HTTP/1.1, or HTTP/2 for clusters with
// protocol: h2), a GET of the configured path or, with `grpc`, the gRPC health protocol's Check
// call (grpc.health.v1.Health/Check), whose answer must be SERVING with grpc-status 0.
namespace {

// Whether `body`, a gRPC answer to Health/Check, is exactly one uncompressed message (a 5-byte
// prefix: flag 0 and its length) holding HealthCheckResponse { status = 1 (SERVING) }. The
// protobuf is read field by field, so fields in any order and unknown ones are understood; a
// truncated or malformed message, or any other status, is not SERVING.
bool grpc_serving(std::string_view body) {
  if (body.size() < 5 || body[0] != 0) return false;
  uint32_t len = 0;
  for (int i = 1; i < 5; ++i) len = len << 8 | static_cast<uint8_t>(body[static_cast<size_t>(i)]);
  std::string_view msg = body.substr(5);
  if (msg.size() != len) return false;
  auto varint = [&msg](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && !msg.empty(); shift += 7) {
      uint8_t b = static_cast<uint8_t>(msg.front());
      msg.remove_prefix(1);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  };
  uint64_t status = 0;  // UNKNOWN when absent
  while (!msg.empty()) {
    uint64_t key = 0, v = 0;
    if (!varint(key)) return false;
    switch (key & 7) {
      case 0:  // varint
        if (!varint(v)) return false;
        if ((key >> 3) == 1) status = v;
        break;
      case 1:  // 64-bit
        if (msg.size() < 8) return false;
        msg.remove_prefix(8);
        break;
      case 2:  // length-delimited
        if (!varint(v) || v > msg.size()) return false;
        msg.remove_prefix(static_cast<size_t>(v));
        break;
      case 5:  // 32-bit
        if (msg.size() < 4) return false;
        msg.remove_prefix(4);
        break;
      default:
        return false;
    }
  }
  return status == 1;
}

}  // namespace

class HealthChecker::Probe final : public http::http1::ClientCallbacks,
                                   public http::http1::ClientOwner,
                                   public http::http2::ClientOwner {
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
    if (grpc()) {
      // Trailers-only (an error before any message) or the message and trailers to come.
      if (end_stream) {
        stream_ = nullptr;
        const http::HeaderField* gs = head_.headers.find("grpc-status");
        verdict(false, "grpc-status " + std::string(gs ? gs->value : "missing"));
        return;
      }
      if (status != 200) verdict(false, "status " + std::to_string(status));
      return;
    }
    bool ok = false;
    for (auto [lo, hi] : cluster_.config().health.expected) ok = ok || (status >= lo && status <= hi);
    if (end_stream) stream_ = nullptr;
    if (!ok) {
      verdict(false, "status " + std::to_string(status));
      return;
    }
    if (end_stream) verdict(true, "");
    else passed_ = true;  // wait for the end of the body, then close
  }
  void on_response_data(std::string_view data, bool end_stream) override {
    if (grpc() && body_.size() < 1024) body_.append(data.substr(0, 1024 - body_.size()));
    if (end_stream) {
      stream_ = nullptr;
      if (grpc()) verdict(false, "no grpc-status");
      else verdict(passed_, "");
    }
  }
  void on_response_trailers(const http::HeaderMap& trailers) override {
    stream_ = nullptr;
    if (!grpc()) {
      verdict(passed_, "");
      return;
    }
    const http::HeaderField* gs = trailers.find("grpc-status");
    if (gs == nullptr || gs->value != "0") {
      verdict(false, "grpc-status " + std::string(gs ? gs->value : "missing"));
      return;
    }
    const bool serving = grpc_serving(body_);
    verdict(serving, serving ? "" : "not SERVING");
  }
  void on_upstream_write_ready() override {}
  void on_failure(http::http1::ClientFailure, std::string_view detail) override {
    stream_ = nullptr;
    verdict(false, std::string(detail));
  }
  // http2::ClientOwner: one connection per probe, closed with it.
  void on_h2_capacity(http::http2::ClientConnection&) override {}
  void on_h2_closed(http::http2::ClientConnection& c) override {
    if (h2_ == &c) h2_ = nullptr;
    loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
  }
  // ClientOwner: probe connections are never reused.
  void on_client_idle(http::http1::ClientConnection& c) override { c.close(); }
  void on_client_closed(http::http1::ClientConnection& c) override {
    if (stream_ == &c) stream_ = nullptr;
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
    body_.clear();
    if (cluster_.config().h2) {
      h2_ = cluster_.connect_h2(ep_, loop_, blocks_, *this);
      stream_ = h2_ != nullptr ? h2_->open_stream() : nullptr;
    } else {
      stream_ = cluster_.connect(ep_, loop_, blocks_, *this);
    }
    if (stream_ == nullptr) {
      verdict(false, "socket");
      return;
    }
    stream_->attach(this);
    req_.reset();
    req_.is_head = false;
    req_.headers.add("Host", hc.host.empty() ? std::string_view(ep_.host_header)
                                             : std::string_view(hc.host));
    req_.headers.add("User-Agent", "citadel-health-check");
    if (!cluster_.config().h2) req_.headers.add("Connection", "close");
    if (grpc()) {
      // HealthCheckRequest { service = hc.grpc_service }, as one length-prefixed message.
      grpc_body_.assign("\0\0\0\0\0", 5);
      if (!hc.grpc_service.empty()) {
        grpc_body_.push_back('\x0a');
        grpc_body_.push_back(static_cast<char>(hc.grpc_service.size()));
        grpc_body_ += hc.grpc_service;
      }
      grpc_body_[4] = static_cast<char>(grpc_body_.size() - 5);
      req_.method = "POST";
      req_.headers.add("Content-Type", "application/grpc");
      req_.headers.add("TE", "trailers");
      req_.framing = http::BodyFraming::kContentLength;
      req_.content_length = grpc_body_.size();
      stream_->send_head(req_, "/grpc.health.v1.Health/Check");
      if (stream_ != nullptr) stream_->send_data(grpc_body_, true);
    } else {
      req_.method = "GET";
      stream_->send_head(req_, hc.path);
    }
    loop_.arm(timeout_timer_, hc.timeout_ms);
  }

  void abandon() {
    loop_.timers().cancel(timeout_timer_);
    if (stream_ != nullptr) {
      stream_->detach();
      stream_->close();
      stream_ = nullptr;
    }
    if (h2_ != nullptr) h2_->close();  // on_h2_closed forgets it
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
  bool grpc() const { return cluster_.config().health.grpc; }

  http::UpstreamStream* stream_ = nullptr;   // the check in flight
  http::http2::ClientConnection* h2_ = nullptr;  // its connection, for protocol: h2
  std::string body_;       // the gRPC answer (bounded)
  std::string grpc_body_;  // the gRPC request
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
