#include "proxy/lb/load_balancer.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace citadel::proxy {
namespace {

struct Hosts {
  std::vector<std::unique_ptr<Endpoint>> owned;
  std::vector<Endpoint*> list;
  explicit Hosts(size_t n, std::vector<uint32_t> weights = {}) {
    for (size_t i = 0; i < n; ++i) {
      auto e = std::make_unique<Endpoint>();
      e->index = i;
      e->label = "10.0.0." + std::to_string(i + 1) + ":80";
      e->weight = weights.empty() ? 1 : weights[i];
      list.push_back(e.get());
      owned.push_back(std::move(e));
    }
  }
};

std::map<size_t, int> spread(LoadBalancer& lb, int n, LbContext ctx = {}) {
  std::map<size_t, int> count;
  for (int i = 0; i < n; ++i) ++count[lb.pick(ctx)->index];
  return count;
}

TEST(RoundRobin, VisitsEveryEndpointEqually) {
  Hosts h(3);
  auto lb = make_round_robin(1);
  lb->update(h.list);
  auto c = spread(*lb, 300);
  EXPECT_EQ(c[0], 100);
  EXPECT_EQ(c[1], 100);
  EXPECT_EQ(c[2], 100);
}

TEST(RoundRobin, RetryAvoidsTheFailedEndpoint) {
  Hosts h(2);
  auto lb = make_round_robin(1);
  lb->update(h.list);
  LbContext ctx;
  for (int i = 0; i < 10; ++i) {
    ctx.avoid = h.list[i % 2];
    EXPECT_NE(lb->pick(ctx), ctx.avoid);
  }
}

TEST(RoundRobin, EmptyGivesNull) {
  auto lb = make_round_robin(1);
  lb->update({});
  EXPECT_EQ(lb->pick({}), nullptr);
}

TEST(Weighted, SmoothAndProportional) {
  Hosts h(3, {5, 1, 1});
  auto lb = make_weighted();
  lb->update(h.list);
  std::string seq;
  for (int i = 0; i < 7; ++i) seq.push_back(static_cast<char>('a' + lb->pick({})->index));
  EXPECT_EQ(seq, "aabacaa");  // smooth: the heavy endpoint's picks are spread, not bunched
  auto c = spread(*lb, 7000);
  EXPECT_EQ(c[0], 5000);
  EXPECT_EQ(c[1], 1000);
  EXPECT_EQ(c[2], 1000);
}

TEST(LeastRequest, PrefersTheLessBusy) {
  Hosts h(2);
  auto lb = make_least_request(7);
  lb->update(h.list);
  std::vector<uint32_t> active = {10, 0};
  LbContext ctx;
  ctx.active = &active;
  auto c = spread(*lb, 1000, ctx);
  EXPECT_EQ(c[1], 1000);  // with two endpoints both are always sampled
}

TEST(LeastRequest, SpreadsWhenIdle) {
  Hosts h(4);
  auto lb = make_least_request(7);
  lb->update(h.list);
  std::vector<uint32_t> active(4, 0);
  LbContext ctx;
  ctx.active = &active;
  auto c = spread(*lb, 4000, ctx);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GT(c[i], 800) << i;
    EXPECT_LT(c[i], 1200) << i;
  }
}

TEST(LeastRequest, WeightsScaleLoad) {
  Hosts h(2, {3, 1});
  auto lb = make_least_request(7);
  lb->update(h.list);
  std::vector<uint32_t> active = {2, 1};  // 2/3 < 1/1: the heavier endpoint is less loaded
  LbContext ctx;
  ctx.active = &active;
  EXPECT_EQ(lb->pick(ctx)->index, 0u);
}

TEST(Maglev, SameKeySameEndpointAndSpread) {
  Hosts h(5);
  auto lb = make_maglev(1, 65537);
  lb->update(h.list);
  std::map<size_t, int> owners;
  for (int k = 0; k < 5000; ++k) {
    LbContext ctx;
    ctx.has_hash = true;
    ctx.hash = stable_hash("user-" + std::to_string(k));
    Endpoint* first = lb->pick(ctx);
    EXPECT_EQ(lb->pick(ctx), first);
    ++owners[first->index];
  }
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_GT(owners[i], 800) << i;
    EXPECT_LT(owners[i], 1200) << i;
  }
}

TEST(Maglev, MinimalDisruptionWhenAnEndpointLeaves) {
  Hosts h(10);
  auto lb = make_maglev(1, 65537);
  lb->update(h.list);
  const int keys = 20000;
  std::vector<size_t> before(keys);
  for (int k = 0; k < keys; ++k) {
    LbContext ctx{true, stable_hash("k" + std::to_string(k)), nullptr, nullptr};
    before[k] = lb->pick(ctx)->index;
  }
  std::vector<Endpoint*> without = h.list;
  without.erase(without.begin() + 3);
  lb->update(without);
  int moved = 0;
  int moved_not_from_3 = 0;
  for (int k = 0; k < keys; ++k) {
    LbContext ctx{true, stable_hash("k" + std::to_string(k)), nullptr, nullptr};
    size_t now = lb->pick(ctx)->index;
    EXPECT_NE(now, 3u);
    if (now != before[k]) {
      ++moved;
      if (before[k] != 3) ++moved_not_from_3;
    }
  }
  // About a tenth of the keys belonged to the leaving endpoint and must move; Maglev moves only
  // a few others.
  EXPECT_GT(moved, keys / 12);
  EXPECT_LT(moved, keys * 15 / 100);
  EXPECT_LT(moved_not_from_3, keys * 3 / 100);
}

TEST(Maglev, WeightsGiveMoreKeys) {
  Hosts h(2, {3, 1});
  auto lb = make_maglev(1, 65537);
  lb->update(h.list);
  int first = 0;
  for (int k = 0; k < 8000; ++k) {
    LbContext ctx{true, stable_hash("w" + std::to_string(k)), nullptr, nullptr};
    first += lb->pick(ctx)->index == 0 ? 1 : 0;
  }
  EXPECT_GT(first, 5600);
  EXPECT_LT(first, 6400);
}

TEST(StableHash, IsStable) {
  EXPECT_EQ(stable_hash("abc"), stable_hash("abc"));
  EXPECT_NE(stable_hash("abc"), stable_hash("abd"));
}

}  // namespace
}  // namespace citadel::proxy
