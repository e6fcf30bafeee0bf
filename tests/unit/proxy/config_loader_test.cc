#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "filters/headers/headers_filter.h"
#include "proxy/config.h"
#include "proxy/extension_registry.h"
#include "proxy/snapshot.h"

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
  std::string joined() const {
    std::string all;
    for (const auto& e : errors.all()) all += e + "\n";
    return all;
  }
  ExtensionRegistry registry;
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

// Lines of the errors, in the order they are reported.
std::vector<int> error_lines(const core::ConfigErrors& errors) {
  std::vector<int> lines;
  for (const auto& e : errors.all()) {
    size_t colon = e.find(".yaml:");
    lines.push_back(colon == std::string::npos ? 0 : std::atoi(e.c_str() + colon + 6));
  }
  return lines;
}

TEST_F(ConfigLoaderTest, ListenersSharingAnAddressAreRefusedAtTheSecond) {
  EXPECT_FALSE(load(R"(listeners:
  - name: public
    address: 127.0.0.1:8080
  - name: copy
    address: 127.0.0.1:8080
admin: { address: "127.0.0.1:9901" }
routes:
  - to: { respond: { status: 200 } }
)"));
  EXPECT_TRUE(
      has_error(":5: listeners[1].address: 127.0.0.1:8080 overlaps the address of "
                "listener \"public\" (line 3)"))
      << joined();
  EXPECT_EQ(errors.all().size(), 1u);
}

TEST_F(ConfigLoaderTest, WildcardAddressOverlapsEveryHostOnItsPort) {
  // The admin listener comes first in the file: the listener is the second one.
  EXPECT_FALSE(load(R"(admin: { address: "127.0.0.1:9901" }
listeners:
  - { name: a, address: "0.0.0.0:8080" }
  - { name: b, address: "127.0.0.2:8080" }
  - { name: c, address: "[::]:9901" }
routes:
  - to: { respond: { status: 200 } }
)"));
  EXPECT_TRUE(
      has_error(":4: listeners[1].address: 127.0.0.2:8080 overlaps the address of "
                "listener \"a\" (line 3)"));
  EXPECT_TRUE(
      has_error(":5: listeners[2].address: [::]:9901 overlaps the address of the admin "
                "listener (line 1)"));
  EXPECT_EQ(errors.all().size(), 2u);
}

TEST_F(ConfigLoaderTest, AdminSharingAListenerAddressIsRefused) {
  EXPECT_FALSE(load(R"(listeners: [{ name: public, address: "127.0.0.1:8080" }]
admin: { address: "0.0.0.0:8080" }
routes:
  - to: { respond: { status: 200 } }
)"));
  EXPECT_TRUE(
      has_error(":2: admin.address: 0.0.0.0:8080 overlaps the address of listener "
                "\"public\" (line 1)"));
}

TEST_F(ConfigLoaderTest, DistinctAddressesAndPortZeroAreAccepted) {
  auto cfg = load(R"(listeners:
  - { name: a, address: "127.0.0.1:0" }
  - { name: b, address: "127.0.0.1:0" }
  - { name: c, address: "0.0.0.0:0" }
  - { name: d, address: "127.0.0.1:8080" }
  - { name: e, address: "127.0.0.2:8080" }
  - { name: f, address: "[::1]:8080" }
  - { name: g, address: "0.0.0.0:8081" }
admin: { address: "127.0.0.1:0" }
routes:
  - to: { respond: { status: 200 } }
)");
  EXPECT_TRUE(cfg) << joined();
}

TEST_F(ConfigLoaderTest, ZeroIntervalsAreRefused) {
  EXPECT_FALSE(load(R"(listeners: [{ name: p, address: "127.0.0.1:0" }]
clusters:
  - name: app
    endpoints: [127.0.0.1:9001]
    dns_refresh: 0s
    health_check: { interval: 0s, timeout: 0ms }
    outlier: { base_ejection: 0s, max_ejection: 0m }
routes:
  - to: { cluster: app }
)"));
  EXPECT_TRUE(has_error(":5: clusters[0].dns_refresh: expected a duration greater than 0"));
  EXPECT_TRUE(
      has_error(":6: clusters[0].health_check.interval: expected a duration greater "
                "than 0"));
  EXPECT_TRUE(
      has_error(":6: clusters[0].health_check.timeout: expected a duration greater "
                "than 0"));
  EXPECT_TRUE(
      has_error(":7: clusters[0].outlier.base_ejection: expected a duration greater "
                "than 0"));
  EXPECT_TRUE(
      has_error(":7: clusters[0].outlier.max_ejection: expected a duration greater "
                "than 0"));
}

TEST_F(ConfigLoaderTest, ZeroMeaningNoneIsAccepted) {
  auto cfg = load(R"(listeners:
  - { name: p, address: "127.0.0.1:0", timeouts: { request: 0s, keepalive: 0s } }
clusters:
  - name: app
    endpoints: [127.0.0.1:9001]
    timeouts: { response: 0s }
    retry: { attempts: 1, backoff_base: 0ms }
drain_timeout: 0s
routes:
  - to: { cluster: app }
    timeout: 0s
)");
  ASSERT_TRUE(cfg) << (errors.empty() ? "" : errors.all()[0]);
  EXPECT_EQ(cfg->clusters[0].timeouts.response_ms, 0u);
  EXPECT_EQ(cfg->drain_timeout_ms, 0u);
}

TEST_F(ConfigLoaderTest, DuplicateKeysAreRefusedWithBothLines) {
  EXPECT_FALSE(load(R"(workers: 1
listeners:
  - name: public
    address: 127.0.0.1:0
    name: other
workers: 2
routes:
  - filters: [ { headers: { request: { set: { X-A: "1", X-A: "2" } } } } ]
    to: { respond: { status: 200 } }
)"));
  EXPECT_TRUE(has_error(":5: listeners[0].name: duplicate key (first at line 3)"));
  EXPECT_TRUE(has_error(":6: workers: duplicate key (first at line 1)"));
  EXPECT_TRUE(
      has_error(":8: routes[0].filters[0].headers.request.set.X-A: duplicate key "
                "(first at line 8)"));
  EXPECT_EQ(errors.all().size(), 3u);
}

TEST_F(ConfigLoaderTest, ErrorsOnAbsentOrEmptyKeysNameALine) {
  EXPECT_FALSE(load(R"(listeners: [{ name: p, address: "127.0.0.1:0" }]
admin:
  address:
clusters:
  - name: app
    endpoints:
      - { weight: 2 }
    health_check:
      interval: 500ms
routes:
  - to: { cluster: app }
)"));
  EXPECT_TRUE(has_error(":3: admin.address: expected an address host:port"));
  EXPECT_TRUE(has_error(":7: clusters[0].endpoints[0].address: expected an address host:port"));
  EXPECT_TRUE(
      has_error(":8: clusters[0].health_check.timeout: the timeout must not exceed the "
                "interval"));
  for (const auto& e : errors.all()) EXPECT_NE(e.find(".yaml:"), std::string::npos) << e;
}

TEST_F(ConfigLoaderTest, ErrorsAreSortedByLine) {
  // The loader checks listeners before routes and clusters before routes; the file has them the
  // other way round.
  EXPECT_FALSE(load(R"(routes:
  - match: { path: nope }
    to: { cluster: missing }
  - to: { respond: { status: 99 } }
clusters:
  - name: app
    lb: fastest
    endpoints: [127.0.0.1:9001]
listeners:
  - name: public
    address: nowhere
    bogus: 1
)"));
  EXPECT_EQ(error_lines(errors), (std::vector<int>{2, 3, 4, 7, 11, 12}));
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

TEST_F(ConfigLoaderTest, RouteRegexesAreRe2AndRewritesKeepTheDollarSyntax) {
  auto cfg = load(R"(listeners: [{ name: p, address: "127.0.0.1:0" }]
routes:
  - match: { path_regex: "^/u/[0-9]+$", headers: [ { name: X-V, regex: "v[0-9]" } ] }
    rewrite: { regex: { pattern: "^/u/([0-9]+)$", substitution: "/users/$1?all=$&" } }
    to: { respond: { status: 204 } }
)");
  ASSERT_TRUE(cfg) << joined();
  EXPECT_EQ(cfg->routes[0].rewrite.regex->second, "/users/$1?all=$&");  // as written
  EXPECT_EQ(cfg->routes[0].rewrite.re2_substitution, "/users/\\1?all=\\0");
}

TEST_F(ConfigLoaderTest, PatternsRe2CannotCompileAreRefusedWithTheirLine) {
  EXPECT_FALSE(load(R"yaml(listeners: [{ name: p, address: "127.0.0.1:0" }]
routes:
  - match: { path_regex: "(a" }
    to: { respond: { status: 204 } }
  - match:
      headers:
        - name: X-A
          regex: "(a)\\1"
    to: { respond: { status: 204 } }
  - rewrite:
      regex: { pattern: "^/(?=x)", substitution: "/" }
    to: { respond: { status: 204 } }
  - rewrite:
      regex:
        pattern: "^/u/([0-9]+)$"
        substitution: "/users/$2"
    to: { respond: { status: 204 } }
  - rewrite:
      regex:
        pattern: "^/u/([0-9]+)$"
        substitution: "/users/$'"
    to: { respond: { status: 204 } }
)yaml"));
  EXPECT_TRUE(has_error(":3: routes[0].match.path_regex: invalid regular expression: missing ): "
                        "(a (RE2 syntax: no backreferences, no lookaround)"))
      << joined();
  EXPECT_TRUE(has_error(":8: routes[1].match.headers[0].regex: invalid regular expression: "
                        "invalid escape sequence: \\1"))
      << joined();
  EXPECT_TRUE(has_error(":11: routes[2].rewrite.regex.pattern: invalid regular expression: "
                        "invalid perl operator: (?="))
      << joined();
  EXPECT_TRUE(has_error(":16: routes[3].rewrite.regex.substitution: names a group the pattern "
                        "does not have (it has 1)"))
      << joined();
  EXPECT_TRUE(has_error(":21: routes[4].rewrite.regex.substitution: $' (the text around the "
                        "match) is not supported"))
      << joined();
  EXPECT_EQ(errors.all().size(), 5u) << joined();
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

namespace citadel::proxy {
namespace {

TEST_F(ConfigLoaderTest, LocalResponsesRefuseHeaderInjectionAndBodiesThatCannotBeSent) {
  EXPECT_FALSE(load("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                    "routes:\n"
                    "  - match: { path_prefix: /a }\n"
                    "    to: { redirect: { host: \"evil.com\\r\\nSet-Cookie: pwn=1\" } }\n"
                    "  - match: { path_prefix: /b }\n"
                    "    to: { redirect: { url: \"http://x/\\r\\nSet-Cookie: a=1\" } }\n"
                    "  - match: { path_prefix: /c }\n"
                    "    to: { respond: { status: 200, content_type: \"text/html\\r\\nX: 1\" } }\n"
                    "  - match: { path_prefix: /d }\n"
                    "    to: { respond: { status: 204, body: xyz } }\n"
                    "  - match: { path_prefix: /e }\n"
                    "    to: { redirect: { host: \"evil.com/x?y\", path: no-slash } }\n"
                    "  - match: { path_prefix: /f }\n"
                    "    to: { redirect: { path: \"/\\u00e9\" } }\n"));
  EXPECT_TRUE(has_error(":4: routes[0].to.redirect.host: control characters"));
  EXPECT_TRUE(has_error(":6: routes[1].to.redirect.url: control characters"));
  EXPECT_TRUE(has_error(":8: routes[2].to.respond.content_type: control characters"));
  EXPECT_TRUE(has_error(":10: routes[3].to.respond.body: a 204 response has no body"));
  EXPECT_TRUE(has_error(":12: routes[4].to.redirect.host: expected host[:port]"));
  EXPECT_TRUE(has_error(":12: routes[4].to.redirect.path: a path starts with /"));
  // A raw UTF-8 byte went into Location as it was (from an outside attack).
  EXPECT_TRUE(has_error(":14: routes[5].to.redirect.path: control characters, spaces and "
                        "non-ASCII bytes")) << joined();
}

TEST_F(ConfigLoaderTest, RefusesWhatWouldGoOnTheWireUnchecked) {
  // From an outside attack: each of these passed validate and reached the upstream (a CR LF in
  // a rewrite or a health check path made two requests of one: request smuggling).
  EXPECT_FALSE(load(
      "listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
      "clusters:\n"
      "  - name: app\n"
      "    endpoints: [127.0.0.1:1]\n"
      "    health_check: { path: \"/h HTTP/1.1\\r\\nX: 1\", host: \"h\\r\\nX: 2\" }\n"
      "routes:\n"
      "  - rewrite: { host: \"evil\\r\\nX-Inj: 1\" }\n"
      "    to: { cluster: app }\n"
      "  - rewrite: { regex: { pattern: \"^/r/(.*)$\", substitution: \"/$1 HTTP/1.1\\r\\n\" } }\n"
      "    to: { cluster: app }\n"
      "  - rewrite: { replace_prefix: { from: /s, to: \"/x y\" } }\n"
      "    to: { cluster: app }\n"
      "  - rewrite: { strip_prefix: \"/s/..\" }\n"
      "    to: { cluster: app }\n"
      "  - match: { headers: [ { name: \"X\\r\\nY\", present: true } ] }\n"
      "    to: { cluster: app }\n"));
  EXPECT_TRUE(has_error(":5: clusters[0].health_check.path: control characters")) << joined();
  EXPECT_TRUE(has_error(":5: clusters[0].health_check.host: expected host[:port]")) << joined();
  EXPECT_TRUE(has_error(":7: routes[0].rewrite.host: expected host[:port]")) << joined();
  EXPECT_TRUE(has_error(":9: routes[1].rewrite.regex.substitution: control characters"))
      << joined();
  EXPECT_TRUE(has_error(":11: routes[2].rewrite.replace_prefix.to: control characters"))
      << joined();
  EXPECT_TRUE(has_error(":13: routes[3].rewrite.strip_prefix: a dot segment")) << joined();
  EXPECT_TRUE(has_error(":15: routes[4].match.headers[0].name: expected a header field name"))
      << joined();
}

TEST_F(ConfigLoaderTest, RefusesRulesThatCanNeverMatch) {
  // A deny rule that never matches lets everything through: each of these validated before.
  EXPECT_FALSE(load("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                    "routes:\n"
                    "  - match: { methods: [delete] }\n"
                    "    to: { respond: { status: 403 } }\n"
                    "  - match: { path_prefix: \"/%73ecret\" }\n"
                    "    to: { respond: { status: 403 } }\n"
                    "  - match: { path: \"/x/../private\" }\n"
                    "    to: { respond: { status: 403 } }\n"
                    "  - match: { host: [\"a b\", \"x:99999\", \"*.*.x\"] }\n"
                    "    to: { respond: { status: 403 } }\n"
                    "  - match: { methods: [\"G T\"] }\n"
                    "    to: { respond: { status: 403 } }\n"));
  EXPECT_TRUE(has_error(":3: routes[0].match.methods: methods are case-sensitive: \"delete\" "
                        "never matches DELETE")) << joined();
  EXPECT_TRUE(has_error(":5: routes[1].match.path_prefix: routing decodes %73, so this never "
                        "matches: write s")) << joined();
  EXPECT_TRUE(has_error(":7: routes[2].match.path: routing resolves dot segments")) << joined();
  EXPECT_TRUE(has_error("got \"a b\"")) << joined();
  EXPECT_TRUE(has_error("got \"x:99999\"")) << joined();
  EXPECT_TRUE(has_error("got \"*.*.x\"")) << joined();
  EXPECT_TRUE(has_error(":11: routes[4].match.methods: \"G T\" is not a method name")) << joined();
}

TEST_F(ConfigLoaderTest, HeadersFilterLeavesFramingToTheCodecs) {
  EXPECT_FALSE(load("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                    "routes:\n"
                    "  - filters:\n"
                    "      - headers:\n"
                    "          request: { set: { Content-Length: \"5\" }, remove: [Connection] }\n"
                    "          response: { set: { Transfer-Encoding: chunked, X-A: \" lead\" } }\n"
                    "    to: { respond: { status: 200 } }\n"));
  EXPECT_TRUE(has_error(":5: routes[0].filters[0].headers.request.set: \"Content-Length\" is "
                        "managed by Citadel's codecs")) << joined();
  EXPECT_TRUE(has_error(":5: routes[0].filters[0].headers.request.remove: \"Connection\" is "
                        "managed")) << joined();
  EXPECT_TRUE(has_error("\"Transfer-Encoding\" is managed")) << joined();
  EXPECT_TRUE(has_error("no leading or trailing whitespace")) << joined();
}

}  // namespace
}  // namespace citadel::proxy

namespace citadel::proxy {
namespace {

// A service for the test: options { greeting: text }, refuses anything else.
class GreeterFactory final : public pipeline::HandlerFactory {
 public:
  explicit GreeterFactory(std::string g) : greeting(std::move(g)) {}
  pipeline::Handler* create(core::Arena&) const override { return nullptr; }
  std::string greeting;
};

class GreeterService final : public pipeline::ServiceConfigParser {
 public:
  std::string_view name() const override { return "greeter"; }
  std::unique_ptr<pipeline::HandlerFactory> parse(const core::ConfigNode& n,
                                                  pipeline::BuildContext&) const override {
    if (!n.defined()) return std::make_unique<GreeterFactory>("hello");
    if (!n.expect_map()) return nullptr;
    n.allow_keys({"greeting"});
    return std::make_unique<GreeterFactory>(n["greeting"].str("hello"));
  }
};

TEST_F(ConfigLoaderTest, ServiceTargetsResolveThroughTheRegistry) {
  // Without the service in the build: the route's `service:` names what is missing.
  EXPECT_FALSE(load("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                    "routes:\n"
                    "  - to: { service: greeter }\n"));
  EXPECT_TRUE(has_error(":3: routes[0].to.service: unknown service \"greeter\" (this build has none)"));

  registry.add_service(std::make_unique<GreeterService>());
  auto cfg = load("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                  "services:\n"
                  "  greeter: { greeting: hi }\n"
                  "routes:\n"
                  "  - match: { path_prefix: /hi }\n"
                  "    to: { service: greeter }\n");
  ASSERT_TRUE(cfg) << (errors.empty() ? "" : errors.all()[0]);
  EXPECT_EQ(cfg->routes[0].target, RouteConfig::kService);
  EXPECT_EQ(cfg->routes[0].service, "greeter");
  core::ConfigErrors build_errors;
  observe::Registry metrics(1);
  auto factory = registry.build_service(cfg->services.at("greeter"), cfg->file, build_errors,
                                        BuildSite{metrics, 1, "r"});
  ASSERT_TRUE(factory);
  EXPECT_EQ(static_cast<GreeterFactory&>(*factory).greeting, "hi");
  // The snapshot gives the route that service's handler factory.
  auto snap = build_snapshot(std::shared_ptr<const Config>(std::move(cfg)), nullptr, registry,
                             metrics, 1, 1);
  ASSERT_TRUE(snap.ok()) << snap.error().message();
  const Route& route = *snap.value()->routes.routes()[0];
  ASSERT_NE(dynamic_cast<const GreeterFactory*>(route.handler.get()), nullptr);
  EXPECT_EQ(dynamic_cast<const GreeterFactory&>(*route.handler).greeting, "hi");

  // Bad options and unknown services under `services:` are refused with their lines.
  EXPECT_FALSE(load("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                    "services:\n"
                    "  greeter: { greting: hi }\n"
                    "  billing: {}\n"
                    "routes:\n"
                    "  - to: { service: greeter }\n"));
  EXPECT_TRUE(has_error(":3: services.greeter"));
  EXPECT_TRUE(has_error(":4: services.billing: unknown service \"billing\" (expected greeter)"));
}

TEST_F(ConfigLoaderTest, AKeyThatIsAMappingIsAnErrorNotACrash) {
  // `{{ port: 1 }}` is a mapping whose key is a mapping; reading it as a name threw.
  auto cfg = load(R"(listeners:
  - name: a
    address: 127.0.0.1:0
    redirect_to_https: {{ port: 1 }}
routes:
  - to: { respond: { status: 200 } }
)");
  EXPECT_EQ(cfg, nullptr);
  EXPECT_TRUE(has_error(":4: listeners[0].redirect_to_https: a key must be a plain name"))
      << joined();
}

TEST_F(ConfigLoaderTest, AcmeListenerNeedsNoCertificateFile) {
  auto cfg = load(R"(listeners:
  - name: s
    address: 127.0.0.1:0
    tls:
      acme:
        directory: https://acme.example/directory
        domains: [WWW.Example.com, example.com]
        renew_before: 30d
store: { data_dir: /var/lib/citadel }
routes:
  - to: { respond: { status: 200 } }
)");
  ASSERT_NE(cfg, nullptr) << joined();
  const auto& acme = *cfg->listeners[0].tls->acme;
  EXPECT_EQ(acme.domains, (std::vector<std::string>{"www.example.com", "example.com"}));
  EXPECT_EQ(acme.renew_before_s, 30u * 86400);
  EXPECT_EQ(acme.challenge, AcmeChallenge::kAuto);
  EXPECT_EQ(cfg->data_dir, "/var/lib/citadel");
  // Without a certificate in the ACME state, the snapshot serves a placeholder for the names.
  observe::Registry metrics(1);
  auto snap = build_snapshot(std::shared_ptr<const Config>(std::move(cfg)), nullptr, registry,
                             metrics, 1, 1);
  ASSERT_TRUE(snap.ok()) << snap.error().message();
  ASSERT_NE(snap.value()->listeners[0].tls, nullptr);
  EXPECT_EQ(snap.value()->listeners[0].tls->names()[0],
            (std::vector<std::string>{"www.example.com", "example.com"}));
}

}  // namespace
}  // namespace citadel::proxy
