// Active HTTP health checks, run once per process on the control thread.
//
// Each endpoint of a cluster with `health_check:` gets a probe: every interval it sends
// `GET <path>` on a fresh connection and expects a status in the configured ranges within the
// timeout. `healthy` consecutive passes mark the endpoint usable, `unhealthy` consecutive
// failures mark it unusable; the verdict is an atomic on the Endpoint that every worker reads,
// and the cluster's generation tells workers to rebuild their host lists.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "observe/log.h"
#include "proxy/cluster.h"

namespace citadel::proxy {

// The threshold state machine of one endpoint's active checks: `healthy` consecutive passes
// make an unhealthy endpoint healthy, `unhealthy` consecutive failures the reverse.
class HealthState {
 public:
  enum class Change { kNone, kBecameHealthy, kBecameUnhealthy };
  HealthState(uint32_t healthy_threshold, uint32_t unhealthy_threshold, bool initially_healthy)
      : healthy_(healthy_threshold), unhealthy_(unhealthy_threshold), up_(initially_healthy) {}
  Change record(bool passed) {
    if (passed) {
      fails_ = 0;
      if (++passes_ >= healthy_ && !up_) {
        up_ = true;
        return Change::kBecameHealthy;
      }
    } else {
      passes_ = 0;
      if (++fails_ >= unhealthy_ && up_) {
        up_ = false;
        return Change::kBecameUnhealthy;
      }
    }
    return Change::kNone;
  }
  bool healthy() const { return up_; }

 private:
  uint32_t healthy_;
  uint32_t unhealthy_;
  bool up_;
  uint32_t passes_ = 0;
  uint32_t fails_ = 0;
};

class HealthChecker {
 public:
  HealthChecker(core::EventLoop& loop, observe::ErrorLog& log);
  ~HealthChecker();

  // Control thread: check exactly these clusters from now on (probes of clusters that are kept
  // carry on; those of dropped clusters stop).
  void set_clusters(const std::vector<std::shared_ptr<Cluster>>& clusters);
  void stop();

  class Probe;

 private:
  core::EventLoop& loop_;
  observe::ErrorLog& log_;
  core::BlockPool blocks_;
  std::map<Cluster*, std::vector<std::unique_ptr<Probe>>> probes_;
  std::vector<std::shared_ptr<Cluster>> clusters_;
};

}  // namespace citadel::proxy
