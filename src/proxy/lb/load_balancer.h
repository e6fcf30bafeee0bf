// Load balancers: pick an endpoint from a worker's current host list.
//
// One instance per cluster per worker (no sharing, no locks). update() is called when the set
// of usable endpoints changes (health, ejection, DNS); pick() per request attempt.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "proxy/config.h"
#include "proxy/endpoint.h"

namespace citadel::proxy {

struct LbContext {
  bool has_hash = false;
  uint64_t hash = 0;
  const Endpoint* avoid = nullptr;            // a retry prefers another endpoint
  const std::vector<uint32_t>* active = nullptr;  // per-endpoint active requests (this worker)
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  virtual void update(const std::vector<Endpoint*>& hosts) = 0;
  // nullptr when the host list is empty.
  virtual Endpoint* pick(const LbContext& ctx) = 0;
};

std::unique_ptr<LoadBalancer> make_round_robin(uint64_t seed);
std::unique_ptr<LoadBalancer> make_least_request(uint64_t seed);
std::unique_ptr<LoadBalancer> make_weighted();
std::unique_ptr<LoadBalancer> make_maglev(uint64_t seed, size_t table_size = 65537);
std::unique_ptr<LoadBalancer> make_load_balancer(LbPolicy policy, uint64_t seed);

// Stable 64-bit hash (FNV-1a followed by a mixer) for hash keys and Maglev permutations.
uint64_t stable_hash(std::string_view s);

// Small fast PRNG for load balancing decisions (not for security).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9e3779b97f4a7c15ull) {}
  uint64_t next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }
  uint32_t below(uint32_t n) { return static_cast<uint32_t>((next() >> 32) * n >> 32); }

 private:
  uint64_t s_;
};

}  // namespace citadel::proxy
