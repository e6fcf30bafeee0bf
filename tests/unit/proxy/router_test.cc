#include "proxy/router.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "proxy/route_regex.h"

namespace citadel::proxy {
namespace {

std::unique_ptr<re2::RE2> re(std::string_view pattern) {
  auto r = compile_route_regex(pattern);
  EXPECT_TRUE(r.ok()) << pattern;
  return r.ok() ? std::move(r.value()) : nullptr;
}

// A route whose regex rewrite is set up as load_config and build_snapshot do it.
std::unique_ptr<Route> regex_rewrite(std::string pattern, std::string substitution) {
  auto r = std::make_unique<Route>();
  auto rewrite = to_re2_rewrite(substitution);
  EXPECT_TRUE(rewrite.ok()) << substitution;
  r->rewrite.re2_substitution = rewrite.ok() ? rewrite.value() : "";
  r->rewrite_regex = re(pattern);
  r->rewrite.regex = std::make_pair(std::move(pattern), std::move(substitution));
  return r;
}

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
  regex->path_regex = re("^/users/[0-9]+$");
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
  HeaderMatch regex{"X-D", HeaderMatch::kRegex, ""};
  r->headers.push_back({present, nullptr});
  r->headers.push_back({exact, nullptr});
  r->headers.push_back({absent, nullptr});
  r->headers.push_back({regex, re("^v[0-9]$")});
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
  // On the heap: GCC 12 misreads the optional<string> of a Route on the stack as uninitialised.
  auto strip = route("strip");
  strip->rewrite.strip_prefix = "/api/v2";
  ASSERT_EQ(rewrite_target(*strip, "/api/v2/users", "a=1", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/users?a=1");
  ASSERT_EQ(rewrite_target(*strip, "/api/v2", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/");
  auto replace = route("replace");
  replace->rewrite.replace_prefix = std::make_pair(std::string("/v1/"), std::string("/legacy/"));
  ASSERT_EQ(rewrite_target(*replace, "/v1/x", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/legacy/x");
  auto regex = regex_rewrite("^/u/([0-9]+)$", "/users/$1");
  ASSERT_EQ(rewrite_target(*regex, "/u/7", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/users/7");
  Route none;
  EXPECT_EQ(rewrite_target(none, "/x", "", out), Rewrite::kNone);
}

TEST(Rewrite, RefusesADotSegmentItMade) {
  // "/e../x" matched path_prefix /e; stripped, it would reach the upstream as "/../x" (from an
  // outside attack). "/e..x" and dots inside a segment are fine.
  std::string out;
  auto strip = route("strip");
  strip->rewrite.strip_prefix = "/e";
  EXPECT_EQ(rewrite_target(*strip, "/e../x", "", out), Rewrite::kRefused);
  EXPECT_EQ(rewrite_target(*strip, "/e..", "", out), Rewrite::kRefused);
  EXPECT_EQ(rewrite_target(*strip, "/e.", "", out), Rewrite::kRefused);
  ASSERT_EQ(rewrite_target(*strip, "/e..x/y", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/..x/y");
  auto replace = route("replace");
  replace->rewrite.replace_prefix = std::make_pair(std::string("/a"), std::string("/b/"));
  EXPECT_EQ(rewrite_target(*replace, "/a./x", "", out), Rewrite::kRefused);
}

TEST(Rewrite, ASubstitutionWithAQueryGetsTheClientsQueryAfterIt) {
  std::string out;
  auto regex = regex_rewrite("^/u/([0-9]+)$", "/users?id=$1");
  ASSERT_EQ(rewrite_target(*regex, "/u/12", "admin=true", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/users?id=12&admin=true");
}

TEST(Router, PathRegexMustMatchTheWholePath) {
  RouteTable t;
  auto r = route("regex");
  r->path_kind = RouteMatchConfig::kRegex;
  r->path_regex = re("/users/[0-9]+");  // no anchors: still the whole path, as before
  t.add(std::move(r));
  auto h = req("GET", "a");
  EXPECT_NE(t.match(h, "/users/12"), nullptr);
  EXPECT_EQ(t.match(h, "/users/12/x"), nullptr);
  EXPECT_EQ(t.match(h, "/x/users/12"), nullptr);
  EXPECT_EQ(t.match(h, "/users/"), nullptr);
}

TEST(Router, PathRegexMatchesBytesOutsideUtf8) {
  RouteTable t;
  auto r = route("regex");
  r->path_kind = RouteMatchConfig::kRegex;
  r->path_regex = re("/caf\xc3\xa9/.+");
  t.add(std::move(r));
  auto h = req("GET", "a");
  EXPECT_NE(t.match(h, "/caf\xc3\xa9/\xff"), nullptr);  // "." takes a byte that is not UTF-8
  EXPECT_EQ(t.match(h, "/cafe/x"), nullptr);
}

TEST(Router, HeaderRegexMustMatchTheWholeValue) {
  RouteTable t;
  auto r = route("r");
  r->headers.push_back({HeaderMatch{"X-Version", HeaderMatch::kRegex, ""}, re("v[0-9]+|beta")});
  t.add(std::move(r));
  auto h = req("GET", "a");
  EXPECT_EQ(t.match(h, "/"), nullptr);  // absent
  h.headers.add("X-Version", "v12");
  EXPECT_NE(t.match(h, "/"), nullptr);
  h.headers.set("X-Version", "beta");
  EXPECT_NE(t.match(h, "/"), nullptr);
  h.headers.set("X-Version", "v12-beta");
  EXPECT_EQ(t.match(h, "/"), nullptr);
  h.headers.set("X-Version", "");
  EXPECT_EQ(t.match(h, "/"), nullptr);
}

// `^(a+)+$` makes a backtracking engine try every way to split the a's: std::regex took
// seconds for 26 of them and overflowed the stack on this path. RE2 is linear in the input.
TEST(Router, PathologicalRegexAnswersInLinearTime) {
  const std::string as(50000, 'a');
  const std::string path = "/" + as + "b";
  const std::string as_b = as + "b";  // header values are views: the strings outlive them
  RouteTable t;
  auto r = route("redos");
  r->path_kind = RouteMatchConfig::kRegex;
  r->path_regex = re("/(a+)+");
  r->headers.push_back({HeaderMatch{"X-A", HeaderMatch::kRegex, ""}, re("^(a+)+$")});
  t.add(std::move(r));
  auto h = req("GET", "a");
  h.headers.add("X-A", as);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(t.match(h, path), nullptr);
  EXPECT_NE(t.match(h, path.substr(0, path.size() - 1)), nullptr);
  h.headers.set("X-A", as_b);
  EXPECT_EQ(t.match(h, path.substr(0, path.size() - 1)), nullptr);
  auto rewrite = regex_rewrite("^/(a+)+$", "/x");
  std::string out;
  ASSERT_EQ(rewrite_target(*rewrite, path, "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, path);  // no match: the path is left as it was
  // Generous bound: only a backtracking engine comes anywhere near it.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(Rewrite, RegexSubstitutionKeepsTheDollarSyntax) {
  std::string out;
  auto two = regex_rewrite("^/u/([0-9]+)/([a-z]+)$", "/users/$2/$1?all=$&");
  ASSERT_EQ(rewrite_target(*two, "/u/7/posts", "page=2", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/users/posts/7?all=/u/7/posts&page=2");
  auto dollar = regex_rewrite("^/price/([0-9]+)$", "/p/$$$1/$x\\");
  ASSERT_EQ(rewrite_target(*dollar, "/price/5", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/p/$5/$x\\");
  auto digit = regex_rewrite("^/v([0-9])$", "/version$010");  // group 1, then "0"
  ASSERT_EQ(rewrite_target(*digit, "/v2", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/version20");
  // Every match is replaced, as std::regex_replace did; the result gets its leading slash.
  auto global = regex_rewrite("a", "b");
  ASSERT_EQ(rewrite_target(*global, "/a/a/c", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/b/b/c");
  auto bare = regex_rewrite("^/old/(.*)$", "$1");
  ASSERT_EQ(rewrite_target(*bare, "/old/x/y", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/x/y");
  ASSERT_EQ(rewrite_target(*bare, "/other", "", out), Rewrite::kRewritten);
  EXPECT_EQ(out, "/other");
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
                         "[::1]:443", "host:", "my_host.local", "a%41b", "example.com.",
                         "example.com.:443"}) {
    EXPECT_TRUE(valid_authority(ok)) << ok;
  }
  for (const char* bad : {"", "[", "[]", "[::1", "[::1]x", "[::1]:x", "[zz]", ":80", "a:b:c",
                          "h:99999", "h:123456", "a]b", "a%4", "a%zz", "u@h", ".", "..",
                          ".internal", "a..b", "example.com..", ".:80"}) {
    EXPECT_FALSE(valid_authority(bad)) << bad;
  }
}

TEST(Router, ATrailingDotNamesTheSameHost) {
  // "admin.internal." is "admin.internal": a host rule must not be walked past with a dot.
  std::string buf;
  EXPECT_EQ(host_without_port("admin.internal.", buf), "admin.internal");
  EXPECT_EQ(host_without_port("ADMIN.Internal.:8080", buf), "admin.internal");
  EXPECT_EQ(host_without_port("x.internal", buf), "x.internal");
}

}  // namespace
}  // namespace citadel::proxy
