// least_request: power of two choices. Two random endpoints, the one with fewer active requests
// on this worker wins; weights scale the comparison (active / weight).
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {
namespace {

class LeastRequest final : public LoadBalancer {
 public:
  explicit LeastRequest(uint64_t seed) : rng_(seed) {}
  void update(const std::vector<Endpoint*>& hosts) override { hosts_ = hosts; }
  Endpoint* pick(const LbContext& ctx) override {
    const uint32_t n = static_cast<uint32_t>(hosts_.size());
    if (n == 0) return nullptr;
    if (n == 1) return hosts_[0];
    uint32_t a = rng_.below(n);
    uint32_t b = rng_.below(n - 1);
    if (b >= a) ++b;
    Endpoint* x = hosts_[a];
    Endpoint* y = hosts_[b];
    if (x == ctx.avoid) return y;
    if (y == ctx.avoid) return x;
    if (ctx.active == nullptr) return x;
    // Compare active/weight without division: ax * wy vs ay * wx.
    uint64_t ax = (*ctx.active)[x->index];
    uint64_t ay = (*ctx.active)[y->index];
    uint64_t lhs = ax * y->weight;
    uint64_t rhs = ay * x->weight;
    if (lhs == rhs) return (rng_.next() & 1) ? x : y;
    return lhs < rhs ? x : y;
  }

 private:
  Rng rng_;
  std::vector<Endpoint*> hosts_;
};

}  // namespace

std::unique_ptr<LoadBalancer> make_least_request(uint64_t seed) {
  return std::make_unique<LeastRequest>(seed);
}

}  // namespace citadel::proxy
