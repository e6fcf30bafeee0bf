// BuildContext as the snapshot builds it: metrics registered at build time, state kept across
// snapshots by key, nothing kept or registered when a config is only checked.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "http/pipeline/build_context.h"
#include "proxy/config.h"
#include "proxy/extension_registry.h"
#include "proxy/snapshot.h"

namespace citadel::proxy {
namespace {

using Hits = pipeline::PerWorker<uint64_t>;

// A filter factory that keeps what it was built with, so the test can look at it.
class CountFactory final : public pipeline::FilterFactory {
 public:
  CountFactory(std::shared_ptr<Hits> h, observe::Counter* c, bool checking)
      : hits(std::move(h)), counter(c), checking(checking) {}
  pipeline::Filter* create(core::Arena&) const override { return nullptr; }
  std::shared_ptr<Hits> hits;
  observe::Counter* counter;
  bool checking;
};

class CountConfig final : public pipeline::FilterConfigParser {
 public:
  std::string_view name() const override { return "count"; }
  std::unique_ptr<pipeline::FilterFactory> parse(const core::ConfigNode& node,
                                                 pipeline::BuildContext& ctx) const override {
    if (node.defined() && !node.expect_map()) return nullptr;
    const std::string route(ctx.route());
    auto hits = ctx.state<Hits>("hits/" + route, [&] {
      ++*(ctx.checking() ? checked : made);
      return std::make_shared<Hits>(ctx.workers(), uint64_t{0});
    });
    observe::Counter* c = ctx.metrics().counter("citadel_test_counted_total", "Counted requests",
                                                "route=\"" + route + "\"");
    return std::make_unique<CountFactory>(std::move(hits), c, ctx.checking());
  }
  std::shared_ptr<int> made = std::make_shared<int>(0);     // for snapshots
  std::shared_ptr<int> checked = std::make_shared<int>(0);  // while checking
};

class ExtensionStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parser = std::make_unique<CountConfig>();
    made = parser->made;
    checked = parser->checked;
    registry.add(std::move(parser));
    path = ::testing::TempDir() + "citadel_state_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(getpid()) + ".yaml";
  }
  void TearDown() override { ::unlink(path.c_str()); }

  std::shared_ptr<const Snapshot> build(const std::string& routes, const Snapshot* previous) {
    std::ofstream(path) << "listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                           "routes:\n" << routes;
    core::ConfigErrors errors;
    auto cfg = load_config(path, registry, errors);
    EXPECT_TRUE(cfg) << (errors.empty() ? "" : errors.all()[0]);
    if (!cfg) return nullptr;
    auto snap = build_snapshot(std::shared_ptr<const Config>(std::move(cfg)), previous, registry,
                               metrics, kWorkers, ++version);
    EXPECT_TRUE(snap.ok()) << snap.error().message();
    return snap.ok() ? snap.value() : nullptr;
  }
  static const CountFactory& factory(const Snapshot& s, size_t route) {
    return dynamic_cast<const CountFactory&>(*s.routes.routes()[route]->filters[0]);
  }

  static constexpr size_t kWorkers = 3;
  ExtensionRegistry registry;
  observe::Registry metrics{kWorkers};
  std::shared_ptr<int> made;
  std::shared_ptr<int> checked;
  std::string path;
  uint64_t version = 0;
};

const char* kTwoRoutes =
    "  - { name: a, match: { path_prefix: /a }, filters: [ { count: {} } ], "
    "to: { respond: { status: 200 } } }\n"
    "  - { name: b, filters: [ { count: {} } ], to: { respond: { status: 200 } } }\n";

TEST_F(ExtensionStateTest, StateAndMetricsSurviveAReload) {
  auto first = build(kTwoRoutes, nullptr);
  ASSERT_TRUE(first);
  EXPECT_EQ(*made, 2);  // one per route key
  const CountFactory& a1 = factory(*first, 0);
  EXPECT_FALSE(a1.checking);
  ASSERT_EQ(a1.hits->size(), kWorkers);
  a1.hits->at(2) += 5;
  a1.counter->add(2, 5);

  // The next snapshot (a reload) is built while the first still serves: its factories get the
  // same objects, with what the workers counted.
  auto second = build(kTwoRoutes, first.get());
  ASSERT_TRUE(second);
  EXPECT_EQ(*made, 2);
  const CountFactory& a2 = factory(*second, 0);
  EXPECT_EQ(a2.hits.get(), a1.hits.get());
  EXPECT_EQ(a2.hits->at(2), 5u);
  EXPECT_EQ(a2.counter, a1.counter);
  EXPECT_NE(factory(*second, 1).hits.get(), a2.hits.get());  // keys are per route here
  first.reset();

  // A route that goes away takes its state with it once no snapshot holds it.
  EXPECT_EQ(registry.live_state(), 2u);
  auto third = build(
      "  - { name: a, filters: [ { count: {} } ], to: { respond: { status: 200 } } }\n",
      second.get());
  ASSERT_TRUE(third);
  EXPECT_EQ(factory(*third, 0).hits->at(2), 5u);
  second.reset();
  EXPECT_EQ(registry.live_state(), 1u);
  // The counter series stays for the process (Prometheus counters never go back).
  EXPECT_NE(metrics.render().find("citadel_test_counted_total{route=\"a\"} 5"), std::string::npos);
  third.reset();
  EXPECT_EQ(registry.live_state(), 0u);
  // With nothing alive, the next build starts from fresh state.
  auto fourth = build(kTwoRoutes, nullptr);
  EXPECT_EQ(factory(*fourth, 0).hits->at(2), 0u);
  EXPECT_EQ(*made, 4);
}

TEST_F(ExtensionStateTest, CheckingKeepsNothingAndRegistersNothing) {
  std::ofstream(path) << "listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                         "routes:\n" << kTwoRoutes;
  core::ConfigErrors errors;
  auto cfg = load_config(path, registry, errors);
  ASSERT_TRUE(cfg);
  EXPECT_EQ(*checked, 2);  // the check parsed both entries...
  EXPECT_EQ(*made, 0);
  EXPECT_EQ(registry.live_state(), 0u);  // ...and kept nothing
  EXPECT_EQ(metrics.render().find("citadel_test_counted_total"), std::string::npos);
}

// Passes the check, then fails to build without saying why (a bug in a filter).
class SilentlyBroken final : public pipeline::FilterConfigParser {
 public:
  std::string_view name() const override { return "broken"; }
  std::unique_ptr<pipeline::FilterFactory> parse(const core::ConfigNode&,
                                                 pipeline::BuildContext& ctx) const override {
    if (ctx.checking()) return std::make_unique<CountFactory>(nullptr, nullptr, true);
    return nullptr;
  }
};

TEST_F(ExtensionStateTest, AFilterThatFailsToBuildFailsTheSnapshot) {
  // Before, the route was built without it: a route whose WAF failed would serve everything.
  registry.add(std::make_unique<SilentlyBroken>());
  std::ofstream(path) << "listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                         "routes:\n"
                         "  - { filters: [ { broken: {} } ], to: { respond: { status: 200 } } }\n";
  core::ConfigErrors errors;
  auto cfg = load_config(path, registry, errors);
  ASSERT_TRUE(cfg);
  auto snap = build_snapshot(std::shared_ptr<const Config>(std::move(cfg)), nullptr, registry,
                             metrics, kWorkers, 1);
  ASSERT_FALSE(snap.ok());
  EXPECT_NE(snap.error().message().find(":3: routes[0].filters[0].broken: filter \"broken\" "
                                        "failed to build"),
            std::string::npos)
      << snap.error().message();
}

TEST(PerWorkerTest, SlotsSitOnCacheLinesOfTheirOwn) {
  pipeline::PerWorker<uint64_t> p(4, uint64_t{7});
  ASSERT_EQ(p.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(p.at(i), 7u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(&p.at(i)) % 64, 0u);
  }
  p.at(1) = 9;
  EXPECT_EQ(p.at(0), 7u);
  EXPECT_EQ(p.at(1), 9u);
}

}  // namespace
}  // namespace citadel::proxy
