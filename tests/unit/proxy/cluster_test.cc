#include "proxy/cluster.h"

#include <gtest/gtest.h>

#include <set>

#include "core/event_loop.h"
#include "proxy/upstream_pool.h"

namespace citadel::proxy {
namespace {

ClusterConfig config(size_t n) {
  ClusterConfig c;
  c.name = "app";
  for (size_t i = 0; i < n; ++i) {
    EndpointConfig e;
    e.address.host = "127.0.0.1";
    e.address.port = static_cast<uint16_t>(10000 + i);
    c.endpoints.push_back(e);
  }
  c.outlier.enabled = true;
  c.outlier.consecutive_failures = 3;
  c.outlier.base_ejection_ms = 1000;
  c.outlier.max_ejection_ms = 2500;
  c.outlier.max_ejection_percent = 50;
  return c;
}

class ClusterTest : public ::testing::Test {
 protected:
  observe::Registry metrics{1};
  observe::ErrorLog log;
};

TEST_F(ClusterTest, EjectsAfterConsecutiveFailuresWithGrowingTime) {
  auto c = Cluster::create(config(4), 1, metrics).value();
  Endpoint& e = *c->endpoints()[0];
  uint64_t now = 100'000;
  EXPECT_FALSE(c->report_failure(e, now, 0, log));
  EXPECT_FALSE(c->report_failure(e, now, 0, log));
  c->report_success(e);  // a success breaks the streak
  EXPECT_FALSE(c->report_failure(e, now, 0, log));
  EXPECT_FALSE(c->report_failure(e, now, 0, log));
  uint64_t gen = c->generation();
  EXPECT_TRUE(c->report_failure(e, now, 0, log));
  EXPECT_GT(c->generation(), gen);
  EXPECT_FALSE(e.usable(now + 999));
  EXPECT_TRUE(e.usable(now + 1000));
  // The second ejection lasts twice as long, the third is capped at max_ejection.
  now += 5000;
  for (int i = 0; i < 3; ++i) c->report_failure(e, now, 0, log);
  EXPECT_FALSE(e.usable(now + 1999));
  EXPECT_TRUE(e.usable(now + 2000));
  now += 5000;
  for (int i = 0; i < 3; ++i) c->report_failure(e, now, 0, log);
  EXPECT_FALSE(e.usable(now + 2499));
  EXPECT_TRUE(e.usable(now + 2500));
}

TEST_F(ClusterTest, MaxEjectionPercentBoundsEjections) {
  auto c = Cluster::create(config(4), 1, metrics).value();
  uint64_t now = 50'000;
  int ejected = 0;
  for (auto& e : c->endpoints()) {
    bool any = false;
    for (int i = 0; i < 3; ++i) any = c->report_failure(*e, now, 0, log) || any;
    ejected += any ? 1 : 0;
  }
  EXPECT_EQ(ejected, 2);  // 50% of 4
  EXPECT_EQ(c->ejected_now(now), 2u);
}

TEST_F(ClusterTest, WorkerPicksSkipUnusableAndPanicUsesAll) {
  auto cfg = config(4);
  cfg.panic_threshold_percent = 50;
  auto c = Cluster::create(cfg, 1, metrics).value();
  core::EventLoop loop;
  core::BlockPool blocks;
  WorkerCluster wc(*c, loop, blocks, 0, 1, 1);
  c->endpoints()[0]->hc_healthy = false;
  c->bump_generation();
  for (int i = 0; i < 20; ++i) {
    LbContext ctx;
    EXPECT_NE(wc.pick(ctx, 1000)->index, 0u);
  }
  // Three of four down: below the panic threshold, traffic spreads over all endpoints.
  c->endpoints()[1]->hc_healthy = false;
  c->endpoints()[2]->hc_healthy = false;
  c->bump_generation();
  std::set<size_t> seen;
  for (int i = 0; i < 40; ++i) {
    LbContext ctx;
    seen.insert(wc.pick(ctx, 1000)->index);
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST_F(ClusterTest, EjectionExpiryIsNoticedWithoutAGenerationChange) {
  auto c = Cluster::create(config(2), 1, metrics).value();
  core::EventLoop loop;
  core::BlockPool blocks;
  WorkerCluster wc(*c, loop, blocks, 0, 1, 1);
  Endpoint& e = *c->endpoints()[0];
  for (int i = 0; i < 3; ++i) c->report_failure(e, 10'000, 0, log);
  for (int i = 0; i < 10; ++i) {
    LbContext ctx;
    EXPECT_EQ(wc.pick(ctx, 10'500)->index, 1u);
  }
  std::set<size_t> seen;
  for (int i = 0; i < 10; ++i) {
    LbContext ctx;
    seen.insert(wc.pick(ctx, 11'001)->index);
  }
  EXPECT_EQ(seen.size(), 2u);
}

TEST_F(ClusterTest, RetryBudget) {
  auto cfg = config(1);
  cfg.retry.budget_percent = 20;
  cfg.retry.min_retry_concurrency = 3;
  auto c = Cluster::create(cfg, 1, metrics).value();
  core::EventLoop loop;
  core::BlockPool blocks;
  WorkerCluster wc(*c, loop, blocks, 0, 1, 1);
  wc.active_requests = 100;
  wc.active_retries = 19;
  EXPECT_TRUE(wc.retry_allowed());
  wc.active_retries = 20;
  EXPECT_FALSE(wc.retry_allowed());  // 20% of 100
  wc.active_requests = 5;
  wc.active_retries = 2;
  EXPECT_TRUE(wc.retry_allowed());  // the floor of 3 concurrent retries
  wc.active_retries = 3;
  EXPECT_FALSE(wc.retry_allowed());
}

TEST_F(ClusterTest, UnresolvableEndpointFails) {
  auto cfg = config(1);
  cfg.endpoints[0].address.host = "no-such-host.invalid";
  auto r = Cluster::create(cfg, 1, metrics);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("cannot resolve"), std::string::npos);
}

}  // namespace
}  // namespace citadel::proxy

namespace citadel::proxy {
namespace {

class NoteWaiter final : public PoolWaiter {
 public:
  void on_pool_ready(http::UpstreamStream& s) override { stream = &s; }
  http::UpstreamStream* stream = nullptr;
};

TEST(WorkerClusterLimits, ANewcomerQueuesBehindRequestsAlreadyWaiting) {
  // From a review: waiters are served from a timer after a slot frees, so a request arriving in
  // between took the slot and the queue starved into 503s under load.
  observe::Registry metrics(1);
  auto cfg = config(1);
  cfg.limits.max_connections = 1;
  cfg.limits.max_pending = 4;
  auto c = Cluster::create(cfg, 1, metrics).value();
  core::EventLoop loop;
  core::BlockPool blocks;
  WorkerCluster wc(*c, loop, blocks, 0, 1, 1);
  Endpoint& e = *c->endpoints()[0];
  wc.on_connection_opened();  // the one connection the limit allows is in use
  NoteWaiter first, newcomer;
  http::UpstreamStream* s = nullptr;
  ASSERT_EQ(wc.acquire(e, first, s), WorkerCluster::Acquire::kQueued);
  // The connection closes: a slot is free, and the waiter is due from the next timer tick.
  wc.on_connection_closed();
  EXPECT_EQ(wc.acquire(e, newcomer, s), WorkerCluster::Acquire::kQueued);
  wc.cancel(first);
  wc.cancel(newcomer);
}

}  // namespace
}  // namespace citadel::proxy
