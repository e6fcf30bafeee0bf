#include "proxy/dns.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <map>

#include "proxy/cluster.h"

namespace citadel::proxy {
namespace {

Address v4(const char* ip, uint16_t port) {
  Address a;
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.addr);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  inet_pton(AF_INET, ip, &sin->sin_addr);
  a.len = sizeof(sockaddr_in);
  return a;
}

HostPort hp(const char* host, uint16_t port) { return HostPort{host, port}; }

TEST(Dns, IpLiteralsNeedNoLookupAndIgnoreTheFamily) {
  auto r = lookup_blocking(hp("10.1.2.3", 80), DnsFamily::kV6);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(r.value().size(), 1u);
  EXPECT_EQ(r.value()[0].text(), "10.1.2.3:80");
  auto r6 = lookup_blocking(hp("::1", 8080), DnsFamily::kV4);
  ASSERT_TRUE(r6.ok()) << r6.error().message();
  EXPECT_EQ(r6.value()[0].text(), "[::1]:8080");
  EXPECT_EQ(r6.value()[0].ip(), "::1");
}

TEST(Dns, LocalhostResolvesToLoopback) {
  auto r = lookup_blocking(hp("localhost", 9000), DnsFamily::kV4);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r.value()[0].text(), "127.0.0.1:9000");
}

TEST(Dns, AddressesSortIpv4FirstAndCompareByValue) {
  Address a = v4("10.0.0.2", 80), b = v4("10.0.0.1", 80);
  Address c;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&c.addr);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(80);
  inet_pton(AF_INET6, "::1", &sin6->sin6_addr);
  c.len = sizeof(sockaddr_in6);
  EXPECT_TRUE(b < a);
  EXPECT_TRUE(a < c);
  EXPECT_TRUE(v4("10.0.0.2", 80) == a);
  EXPECT_FALSE(v4("10.0.0.2", 81) == a);
}

TEST(Dns, DnsNamesListsOnlyNames) {
  ClusterConfig c;
  c.dns_family = DnsFamily::kAll;
  c.endpoints.push_back({hp("10.0.0.1", 80), 1});
  c.endpoints.push_back({hp("api.internal", 80), 1});
  auto names = dns_names({c});
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0].first.text(), "api.internal:80");
  EXPECT_EQ(names[0].second, DnsFamily::kAll);
}

TEST(Dns, TableLookupAnswersFromTheTableOnly) {
  LookupTable table;
  table.emplace(LookupKey{"api.internal:80", DnsFamily::kV4Preferred},
                std::vector<Address>{v4("10.0.0.1", 80)});
  auto lookup = table_lookup(table);
  auto r = lookup(hp("api.internal", 80), DnsFamily::kV4Preferred);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()[0].text(), "10.0.0.1:80");
  EXPECT_FALSE(lookup(hp("api.internal", 80), DnsFamily::kV6).ok());
  EXPECT_FALSE(lookup(hp("other.internal", 80), DnsFamily::kV4Preferred).ok());
  EXPECT_TRUE(lookup(hp("10.9.9.9", 80), DnsFamily::kV4Preferred).ok());  // literal: no table
}

// Cluster building with a table standing in for DNS.
class DnsCluster : public ::testing::Test {
 protected:
  observe::Registry metrics{1};
  std::map<std::string, std::vector<Address>> answers;
  LookupFn lookup = [this](const HostPort& h, DnsFamily f) -> core::Result<std::vector<Address>> {
    if (is_ip_literal(h.host)) return lookup_blocking(h, f);
    auto it = answers.find(h.text());
    if (it == answers.end()) return core::Status::error("cannot resolve " + h.text());
    return it->second;
  };

  ClusterConfig config() {
    ClusterConfig c;
    c.name = "app";
    c.endpoints.push_back({hp("api.internal", 80), 3});
    c.endpoints.push_back({hp("10.0.0.9", 80), 1});
    c.health.enabled = true;
    c.outlier.enabled = true;
    return c;
  }
};

TEST_F(DnsCluster, EveryAddressOfANameIsAnEndpoint) {
  answers["api.internal:80"] = {v4("10.0.0.1", 80), v4("10.0.0.2", 80)};
  auto c = Cluster::create(config(), 1, metrics, lookup).value();
  ASSERT_EQ(c->endpoints().size(), 3u);
  EXPECT_EQ(c->endpoints()[0]->label, "api.internal:80 (10.0.0.1)");
  EXPECT_EQ(c->endpoints()[1]->label, "api.internal:80 (10.0.0.2)");
  EXPECT_EQ(c->endpoints()[2]->label, "10.0.0.9:80");
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(c->endpoints()[i]->index, i);
  EXPECT_EQ(c->endpoints()[0]->host_header, "api.internal:80");
  EXPECT_EQ(c->endpoints()[1]->weight, 3u);
  EXPECT_EQ(c->endpoints()[2]->weight, 1u);
  EXPECT_TRUE(c->has_dns_names());
  EXPECT_TRUE(c->addresses_match(config(), lookup));
  answers["api.internal:80"].push_back(v4("10.0.0.3", 80));
  EXPECT_FALSE(c->addresses_match(config(), lookup));
  answers.clear();
  EXPECT_FALSE(c->addresses_match(config(), lookup));  // a failed lookup is not a match
  EXPECT_FALSE(Cluster::create(config(), 1, metrics, lookup).ok());
}

TEST_F(DnsCluster, HealthAndEjectionCarryOverForAddressesThatStay) {
  answers["api.internal:80"] = {v4("10.0.0.1", 80), v4("10.0.0.2", 80)};
  auto old = Cluster::create(config(), 1, metrics, lookup).value();
  old->endpoints()[0]->hc_healthy.store(false);
  old->endpoints()[1]->ejected_until_ms.store(123'456);
  old->endpoints()[1]->ejection_count.store(2);
  old->endpoints()[2]->hc_healthy.store(false);

  answers["api.internal:80"] = {v4("10.0.0.2", 80), v4("10.0.0.3", 80)};
  auto c = Cluster::create(config(), 1, metrics, lookup, old.get()).value();
  ASSERT_EQ(c->endpoints().size(), 3u);
  const Endpoint& kept = *c->endpoints()[0];  // 10.0.0.2
  EXPECT_EQ(kept.label, "api.internal:80 (10.0.0.2)");
  EXPECT_TRUE(kept.hc_healthy.load());
  EXPECT_EQ(kept.ejected_until_ms.load(), 123'456u);
  EXPECT_EQ(kept.ejection_count.load(), 2u);
  const Endpoint& fresh = *c->endpoints()[1];  // 10.0.0.3: starts healthy
  EXPECT_TRUE(fresh.hc_healthy.load());
  EXPECT_EQ(fresh.ejected_until_ms.load(), 0u);
  EXPECT_FALSE(c->endpoints()[2]->hc_healthy.load());  // the literal kept its verdict

  // With health checks turned off in the new config nothing can bring a verdict back: it is
  // not carried over.
  auto cfg = config();
  cfg.health.enabled = false;
  auto unchecked = Cluster::create(cfg, 1, metrics, lookup, c.get()).value();
  EXPECT_TRUE(unchecked->endpoints()[2]->hc_healthy.load());
}

}  // namespace
}  // namespace citadel::proxy
