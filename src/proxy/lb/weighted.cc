// weighted: smooth weighted round robin (NGINX's algorithm): every pick adds each endpoint's
// weight to its current score, takes the highest and subtracts the total. Picks are spread
// evenly within a cycle (5,1,1 gives a a b a c a a, not a a a a a b c).
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {
namespace {

class Weighted final : public LoadBalancer {
 public:
  void update(const std::vector<Endpoint*>& hosts) override {
    hosts_ = hosts;
    current_.assign(hosts.size(), 0);
    total_ = 0;
    for (auto* h : hosts) total_ += h->weight;
  }
  Endpoint* pick(const LbContext& ctx) override {
    if (hosts_.empty()) return nullptr;
    size_t best = pick_once();
    if (hosts_[best] == ctx.avoid && hosts_.size() > 1) best = pick_once();
    return hosts_[best];
  }

 private:
  size_t pick_once() {
    size_t best = 0;
    for (size_t i = 0; i < hosts_.size(); ++i) {
      current_[i] += hosts_[i]->weight;
      if (current_[i] > current_[best]) best = i;
    }
    current_[best] -= total_;
    return best;
  }
  std::vector<Endpoint*> hosts_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
};

}  // namespace

std::unique_ptr<LoadBalancer> make_weighted() { return std::make_unique<Weighted>(); }

}  // namespace citadel::proxy
