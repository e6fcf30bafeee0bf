#include "proxy/router.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace citadel::proxy {
namespace {

http::RequestHead req(std::string_view method, std::string_view authority) {
  http::RequestHead h;
  h.method = method;
  h.authority = authority;
  return h;
}

std::unique_ptr<Route> route(std::string name) {
  auto r = std::make_unique<Route>();
  r->name = std::move(name);
  return r;
}

TEST(Router, FirstMatchWinsByPathKind) {
  RouteTable t;
  auto exact = route("exact");
  exact->path_kind = RouteMatchConfig::kExact;
  exact->path = "/api";
  auto prefix = route("prefix");
  prefix->path_kind = RouteMatchConfig::kPrefix;
  prefix->path = "/api/";
  auto regex = route("regex");
  regex->path_kind = RouteMatchConfig::kRegex;
  regex->path_regex = std::regex("^/users/[0-9]+$");
  auto any = route("any");
  t.add(std::move(exact));
  t.add(std::move(prefix));
  t.add(std::move(regex));
  t.add(std::move(any));
  auto h = req("GET", "a");
  EXPECT_EQ(t.match(h, "/api")->name, "exact");
  EXPECT_EQ(t.match(h, "/api/x")->name, "prefix");
  EXPECT_EQ(t.match(h, "/users/12")->name, "regex");
  EXPECT_EQ(t.match(h, "/users/x")->name, "any");
}

TEST(Router, HostsExactAndWildcardIgnoringPortAndCase) {
  RouteTable t;
  auto r = route("hosts");
  r->exact_hosts = {"example.com"};
  r->wildcard_hosts = {".example.org"};
  t.add(std::move(r));
  EXPECT_NE(t.match(req("GET", "Example.COM:8080"), "/"), nullptr);
  EXPECT_NE(t.match(req("GET", "a.example.org"), "/"), nullptr);
  EXPECT_NE(t.match(req("GET", "a.b.example.org"), "/"), nullptr);
  EXPECT_EQ(t.match(req("GET", "example.org"), "/"), nullptr);
  EXPECT_EQ(t.match(req("GET", "badexample.com"), "/"), nullptr);
}

TEST(Router, MethodsAndHeaders) {
  RouteTable t;
  auto r = route("r");
  r->methods = {"POST", "PUT"};
  HeaderMatch present{"X-A", HeaderMatch::kPresent, ""};
  HeaderMatch exact{"X-B", HeaderMatch::kExact, "1"};
  HeaderMatch absent{"X-C", HeaderMatch::kAbsent, ""};
  HeaderMatch re{"X-D", HeaderMatch::kRegex, ""};
  r->headers.push_back({present, {}});
  r->headers.push_back({exact, {}});
  r->headers.push_back({absent, {}});
  r->headers.push_back({re, std::regex("^v[0-9]$")});
  t.add(std::move(r));
  auto h = req("POST", "a");
  h.headers.add("x-a", "");
  h.headers.add("X-B", "1");
  h.headers.add("X-D", "v2");
  EXPECT_NE(t.match(h, "/"), nullptr);
  auto g = h;
  g.method = "GET";
  EXPECT_EQ(t.match(g, "/"), nullptr);
  auto c = h;
  c.headers.add("X-C", "x");
  EXPECT_EQ(t.match(c, "/"), nullptr);
  auto d = h;
  d.headers.set("X-D", "v22");
  EXPECT_EQ(t.match(d, "/"), nullptr);
}

TEST(Rewrite, StripReplaceRegex) {
  std::string out;
  Route strip;
  strip.rewrite.strip_prefix = "/api/v2";
  ASSERT_TRUE(rewrite_target(strip, "/api/v2/users", "a=1", out));
  EXPECT_EQ(out, "/users?a=1");
  ASSERT_TRUE(rewrite_target(strip, "/api/v2", "", out));
  EXPECT_EQ(out, "/");
  Route replace;
  replace.rewrite.replace_prefix = std::make_pair(std::string("/v1/"), std::string("/legacy/"));
  ASSERT_TRUE(rewrite_target(replace, "/v1/x", "", out));
  EXPECT_EQ(out, "/legacy/x");
  Route re;
  re.rewrite.regex = std::make_pair(std::string("^/u/([0-9]+)$"), std::string("/users/$1"));
  re.rewrite_regex = std::regex("^/u/([0-9]+)$");
  ASSERT_TRUE(rewrite_target(re, "/u/7", "", out));
  EXPECT_EQ(out, "/users/7");
  Route none;
  EXPECT_FALSE(rewrite_target(none, "/x", "", out));
}

TEST(Router, TraceOnlyWhereListed) {
  Route any;
  EXPECT_FALSE(any.lists_method("TRACE"));
  Route listed;
  listed.methods = {"GET", "TRACE"};
  EXPECT_TRUE(listed.lists_method("TRACE"));
  EXPECT_TRUE(listed.lists_method("trace"));
  EXPECT_FALSE(listed.lists_method("POST"));
}

TEST(Router, UpgradesAllowedOnlyWhenEveryProtocolIsListed) {
  Route none;
  EXPECT_FALSE(none.allows_upgrade("websocket"));
  Route ws;
  ws.upgrades = {"websocket"};
  EXPECT_TRUE(ws.allows_upgrade("websocket"));
  EXPECT_TRUE(ws.allows_upgrade("WebSocket"));
  EXPECT_TRUE(ws.allows_upgrade("websocket/13"));
  EXPECT_FALSE(ws.allows_upgrade("h2c"));
  EXPECT_FALSE(ws.allows_upgrade("websocket, h2c"));
  EXPECT_FALSE(ws.allows_upgrade(""));
  Route h2c;  // whatever built it, h2c never passes
  h2c.upgrades = {"h2c"};
  EXPECT_FALSE(h2c.allows_upgrade("h2c"));
}

TEST(Router, AuthorityShape) {
  for (const char* ok : {"example.com", "example.com:8080", "a", "127.0.0.1:80", "[::1]",
                         "[::1]:443", "host:", "my_host.local", "a%41b"}) {
    EXPECT_TRUE(valid_authority(ok)) << ok;
  }
  for (const char* bad : {"", "[", "[]", "[::1", "[::1]x", "[::1]:x", "[zz]", ":80", "a:b:c",
                          "h:99999", "h:123456", "a]b", "a%4", "a%zz", "u@h"}) {
    EXPECT_FALSE(valid_authority(bad)) << bad;
  }
}

}  // namespace
}  // namespace citadel::proxy
