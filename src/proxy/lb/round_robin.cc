// round_robin: each endpoint in turn. A retry skips the endpoint that just failed when it can.
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {
namespace {

class RoundRobin final : public LoadBalancer {
 public:
  explicit RoundRobin(uint64_t seed) : rng_(seed) {}
  void update(const std::vector<Endpoint*>& hosts) override {
    hosts_ = hosts;
    // Start each worker at a different place so workers do not move in lockstep.
    next_ = hosts_.empty() ? 0 : rng_.below(static_cast<uint32_t>(hosts_.size()));
  }
  Endpoint* pick(const LbContext& ctx) override {
    if (hosts_.empty()) return nullptr;
    Endpoint* e = hosts_[next_++ % hosts_.size()];
    if (e == ctx.avoid && hosts_.size() > 1) e = hosts_[next_++ % hosts_.size()];
    return e;
  }

 private:
  Rng rng_;
  std::vector<Endpoint*> hosts_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<LoadBalancer> make_round_robin(uint64_t seed) {
  return std::make_unique<RoundRobin>(seed);
}

uint64_t stable_hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  // splitmix64 finaliser: spreads FNV's weak low bits.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

std::unique_ptr<LoadBalancer> make_load_balancer(LbPolicy policy, uint64_t seed) {
  switch (policy) {
    case LbPolicy::kLeastRequest: return make_least_request(seed);
    case LbPolicy::kWeighted: return make_weighted();
    case LbPolicy::kConsistentHash: return make_maglev(seed);
    case LbPolicy::kRoundRobin: break;
  }
  return make_round_robin(seed);
}

}  // namespace citadel::proxy
