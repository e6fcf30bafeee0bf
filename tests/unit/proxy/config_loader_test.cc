#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <string>

#include "filters/headers/headers_filter.h"
#include "proxy/config.h"
#include "proxy/filter_registry.h"

namespace citadel::proxy {
namespace {

class ConfigLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry.add(std::make_unique<filters::HeadersFilterConfig>());
    // One file per test: CTest runs tests in parallel processes.
    path = ::testing::TempDir() + "citadel_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(getpid()) + ".yaml";
  }
  std::unique_ptr<Config> load(const std::string& text) {
    std::ofstream(path) << text;
    errors = core::ConfigErrors();
    return load_config(path, registry, errors);
  }
  bool has_error(const std::string& needle) const {
    for (const auto& e : errors.all()) {
      if (e.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  FilterRegistry registry;
  std::string path;
  core::ConfigErrors errors;
};

TEST_F(ConfigLoaderTest, FullConfig) {
  auto cfg = load(R"(workers: 3
listeners:
  - name: public
    address: 127.0.0.1:8080
    timeouts: { header: 5s, keepalive: 2m }
    limits: { body: 1MiB }
admin: { address: 127.0.0.1:9901 }
clusters:
  - name: app
    lb: consistent_hash
    hash: { cookie: session }
    endpoints: [127.0.0.1:9001, { address: "[::1]:9002", weight: 2 }]
    health_check: { path: /hc, interval: 2s, timeout: 1s, expected_statuses: [200, "300-302"] }
    outlier: { consecutive_failures: 7 }
    retry: { attempts: 3, on: [reset, 503] }
routes:
  - match: { host: ["a.com", "*.b.com"], path_prefix: /x, methods: [GET] }
    filters: [ { headers: { request: { set: { X-A: "1" } } } } ]
    to: { cluster: app }
)");
  ASSERT_TRUE(cfg) << (errors.empty() ? "" : errors.all()[0]);
  EXPECT_EQ(cfg->workers, 3u);
  EXPECT_EQ(cfg->listeners[0].timeouts.header_ms, 5000u);
  EXPECT_EQ(cfg->listeners[0].timeouts.keepalive_ms, 120000u);
  EXPECT_EQ(cfg->listeners[0].limits.body, 1u << 20);
  const ClusterConfig& c = cfg->clusters[0];
  EXPECT_EQ(c.lb, LbPolicy::kConsistentHash);
  EXPECT_EQ(c.hash.kind, HashPolicy::kCookie);
  EXPECT_EQ(c.endpoints[1].address.host, "::1");
  EXPECT_EQ(c.endpoints[1].weight, 2u);
  EXPECT_EQ(c.health.expected.size(), 2u);
  EXPECT_EQ(c.health.expected[1], std::make_pair(300, 302));
  EXPECT_EQ(c.outlier.consecutive_failures, 7u);
  EXPECT_TRUE(c.retry.on_reset);
  EXPECT_FALSE(c.retry.on_connect_failure);
  EXPECT_EQ(c.retry.statuses, std::vector<int>{503});
  EXPECT_EQ(cfg->routes[0].match.hosts.size(), 2u);
  EXPECT_EQ(cfg->routes[0].filters[0].name, "headers");
}

TEST_F(ConfigLoaderTest, EveryErrorWithLineAndExpectation) {
  auto cfg = load(R"(listeners:
  - name: public
    address: 127.0.0.1:99999
clusters:
  - name: app
    lb: fastest
    endpoints: []
    timeouts: { connect: soon }
    bogus: 1
routes:
  - match: { path_prefix: api }
    filters: [ { nope: {} } ]
    to: { cluster: other }
  - to: { respond: { status: 200 }, cluster: app }
)");
  EXPECT_FALSE(cfg);
  EXPECT_TRUE(has_error(":3: listeners[0].address: expected an address host:port"));
  EXPECT_TRUE(has_error(":6: clusters[0].lb: unknown value \"fastest\" (expected round_robin, "
                        "least_request, weighted, consistent_hash)"));
  EXPECT_TRUE(has_error(":7: clusters[0].endpoints: a cluster needs at least one endpoint"));
  EXPECT_TRUE(has_error(":8: clusters[0].timeouts.connect: expected a duration"));
  EXPECT_TRUE(has_error(":9: clusters[0].bogus: unknown key"));
  EXPECT_TRUE(has_error(":11: routes[0].match: paths start with /"));
  EXPECT_TRUE(has_error("routes[0].filters[0].nope: unknown filter \"nope\" (expected headers)"));
  EXPECT_TRUE(has_error(":13: routes[0].to.cluster: no cluster named \"other\""));
  EXPECT_TRUE(has_error("routes[1].to: a route's `to:` names exactly one of"));
  EXPECT_GE(errors.all().size(), 9u);
}

TEST_F(ConfigLoaderTest, SyntaxErrorHasLine) {
  EXPECT_FALSE(load("listeners:\n  - name: [unclosed\n"));
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors.all()[0].find("YAML syntax error"), std::string::npos);
}

TEST_F(ConfigLoaderTest, HeaderFilterValidation) {
  EXPECT_FALSE(load(R"(listeners: [{ name: p, address: "127.0.0.1:0" }]
routes:
  - filters: [ { headers: { request: { set: { "Bad Name": x } }, reply: {} } } ]
    to: { respond: { status: 204 } }
)"));
  EXPECT_TRUE(has_error("invalid header name \"Bad Name\""));
  EXPECT_TRUE(has_error("reply: unknown key (expected one of request, response)"));
}

TEST_F(ConfigLoaderTest, ListenerPathOptions) {
  auto cfg = load(R"(listeners:
  - { name: a, address: "127.0.0.1:0" }
  - { name: b, address: "127.0.0.1:0", escaped_slashes: keep, forward_path: original }
  - { name: c, address: "127.0.0.1:0", escaped_slashes: redirect }
routes:
  - to: { respond: { status: 204 } }
)");
  ASSERT_TRUE(cfg) << (errors.empty() ? "" : errors.all()[0]);
  EXPECT_EQ(cfg->listeners[0].escaped_slashes, http::EscapedSlashes::kReject);
  EXPECT_TRUE(cfg->listeners[0].forward_normalized);
  EXPECT_EQ(cfg->listeners[1].escaped_slashes, http::EscapedSlashes::kKeep);
  EXPECT_FALSE(cfg->listeners[1].forward_normalized);
  EXPECT_EQ(cfg->listeners[2].escaped_slashes, http::EscapedSlashes::kRedirect);

  EXPECT_FALSE(load(R"(listeners:
  - name: a
    address: "127.0.0.1:0"
    escaped_slashes: decode
    forward_path: original
  - { name: b, address: "127.0.0.1:0", escaped_slashes: unescape }
routes:
  - to: { respond: { status: 204 } }
)"));
  EXPECT_TRUE(has_error(":4: listeners[0].escaped_slashes: decode routes on the decoded path"));
  EXPECT_TRUE(has_error("listeners[1].escaped_slashes: unknown value \"unescape\""));
}

TEST_F(ConfigLoaderTest, RouteUpgradesRefuseH2c) {
  auto cfg = load(R"(listeners: [{ name: p, address: "127.0.0.1:0" }]
routes:
  - upgrades: [WebSocket]
    to: { respond: { status: 204 } }
)");
  ASSERT_TRUE(cfg) << (errors.empty() ? "" : errors.all()[0]);
  EXPECT_EQ(cfg->routes[0].upgrades, std::vector<std::string>{"websocket"});
  EXPECT_FALSE(load(R"(listeners: [{ name: p, address: "127.0.0.1:0" }]
routes:
  - upgrades: [websocket, H2C, "a b"]
    to: { respond: { status: 204 } }
)"));
  EXPECT_TRUE(has_error(":3: routes[0].upgrades[1]: h2c upgrades are never forwarded"));
  EXPECT_TRUE(has_error("routes[0].upgrades[2]: expected an Upgrade protocol name"));
}

TEST(HostPort, Parse) {
  EXPECT_EQ(parse_host_port("127.0.0.1:80")->port, 80);
  EXPECT_EQ(parse_host_port("[::1]:443")->host, "::1");
  EXPECT_EQ(parse_host_port("db.internal:5432")->host, "db.internal");
  EXPECT_FALSE(parse_host_port("127.0.0.1"));
  EXPECT_FALSE(parse_host_port("127.0.0.1:70000"));
  EXPECT_FALSE(parse_host_port("::1:80"));
  EXPECT_FALSE(parse_host_port(":80"));
}

}  // namespace
}  // namespace citadel::proxy
