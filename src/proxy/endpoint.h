// An upstream endpoint and the health state that every worker shares.
//
// Endpoints are created with their Cluster on the control thread and live as long as it. The
// health fields are atomics: the control thread's active health checks and any worker's passive
// outlier detection write them (rarely: on state changes and failures), workers read them.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "observe/metrics.h"

namespace citadel::proxy {

struct Endpoint {
  size_t index = 0;         // position in the cluster's endpoint list
  std::string label;        // "host:port" as configured, for logs and metrics
  std::string host_header;  // default Host for health checks
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  uint32_t weight = 1;
  observe::Gauge* active_requests = nullptr;  // summed over workers for /clusters and /metrics

  // Active health checking verdict (control thread writes).
  std::atomic<bool> hc_healthy{true};
  // Passive outlier detection (workers write on failure; success resets the streak).
  std::atomic<uint32_t> consecutive_failures{0};
  std::atomic<uint64_t> ejected_until_ms{0};
  std::atomic<uint32_t> ejection_count{0};

  // The configured host (a name or an IP literal): the name TLS verifies and sends. Last: the
  // fields above are read on every request.
  std::string host;

  bool usable(uint64_t now_ms) const {
    return hc_healthy.load(std::memory_order_relaxed) &&
           ejected_until_ms.load(std::memory_order_relaxed) <= now_ms;
  }
};

}  // namespace citadel::proxy
