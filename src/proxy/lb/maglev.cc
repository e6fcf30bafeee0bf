// consistent_hash: Maglev (Eisenbud et al., NSDI 2016). Each endpoint fills a lookup table
// along its own permutation; a key's hash indexes the table. When an endpoint leaves, only the
// keys it owned move (plus a small fraction), and every worker builds the same table from the
// same endpoints. Weights give an endpoint proportionally more turns while filling.
#include "proxy/lb/load_balancer.h"

namespace citadel::proxy {
namespace {

class Maglev final : public LoadBalancer {
 public:
  Maglev(uint64_t seed, size_t table_size) : rng_(seed), m_(table_size) {}

  void update(const std::vector<Endpoint*>& hosts) override {
    hosts_ = hosts;
    table_.assign(hosts.empty() ? 0 : m_, nullptr);
    if (hosts.empty()) return;
    const size_t n = hosts.size();
    std::vector<uint64_t> offset(n), skip(n), next(n, 0);
    uint32_t max_weight = 1;
    for (size_t i = 0; i < n; ++i) {
      uint64_t h = stable_hash(hosts[i]->label);
      offset[i] = h % m_;
      skip[i] = (stable_hash(std::string(hosts[i]->label) + "#skip") % (m_ - 1)) + 1;
      if (hosts[i]->weight > max_weight) max_weight = hosts[i]->weight;
    }
    size_t filled = 0;
    // Weighted fill: in round r an endpoint takes a turn when its weight reaches r's share.
    for (uint64_t round = 0; filled < m_; ++round) {
      for (size_t i = 0; i < n && filled < m_; ++i) {
        // Endpoint i takes weight/max_weight of the turns, spread evenly over rounds.
        uint64_t w = hosts[i]->weight;
        if (((round + 1) * w) / max_weight == (round * w) / max_weight) continue;
        uint64_t c;
        do {
          c = (offset[i] + next[i] * skip[i]) % m_;
          ++next[i];
        } while (table_[c] != nullptr);
        table_[c] = hosts[i];
        ++filled;
      }
    }
  }

  Endpoint* pick(const LbContext& ctx) override {
    if (hosts_.empty()) return nullptr;
    if (!ctx.has_hash) return hosts_[rng_.below(static_cast<uint32_t>(hosts_.size()))];
    Endpoint* e = table_[ctx.hash % m_];
    if (e == ctx.avoid && hosts_.size() > 1) {
      // A retry walks the table to the next distinct endpoint: deterministic for the key.
      for (size_t k = 1; k < m_; ++k) {
        Endpoint* alt = table_[(ctx.hash + k) % m_];
        if (alt != ctx.avoid) return alt;
      }
    }
    return e;
  }

 private:
  Rng rng_;
  size_t m_;
  std::vector<Endpoint*> hosts_;
  std::vector<Endpoint*> table_;
};

}  // namespace

std::unique_ptr<LoadBalancer> make_maglev(uint64_t seed, size_t table_size) {
  return std::make_unique<Maglev>(seed, table_size);
}

}  // namespace citadel::proxy
