#include "http/client/url.h"

#include <gtest/gtest.h>

namespace citadel::http::client {
namespace {

TEST(ParseUrl, SplitsHostPortAndTarget) {
  auto u = parse_url("http://Example.COM:8080/a/b?x=1&y=%20#frag");
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_FALSE(u.value().https);
  EXPECT_EQ(u.value().host, "example.com");
  EXPECT_FALSE(u.value().host_is_ip);
  EXPECT_EQ(u.value().port, 8080);
  EXPECT_EQ(u.value().authority, "example.com:8080");
  EXPECT_EQ(u.value().target, "/a/b?x=1&y=%20");
}

TEST(ParseUrl, DefaultsPortAndPath) {
  auto u = parse_url("http://h");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u.value().port, 80);
  EXPECT_EQ(u.value().target, "/");
  EXPECT_EQ(u.value().authority, "h");
  auto s = parse_url("https://h/");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s.value().https);
  EXPECT_EQ(s.value().port, 443);
}

TEST(ParseUrl, TakesIpLiterals) {
  auto v6 = parse_url("http://[::1]:9000/x");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().host, "::1");
  EXPECT_TRUE(v6.value().host_is_ip);
  EXPECT_EQ(v6.value().authority, "[::1]:9000");
  auto v4 = parse_url("http://127.0.0.1/");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4.value().host, "127.0.0.1");
  EXPECT_TRUE(v4.value().host_is_ip);
}

TEST(ParseUrl, RefusesWhatItCannotUse) {
  for (const char* bad :
       {"", "/relative", "ftp://h/", "http://user:pw@h/", "http:///path", "http://h:99999/",
        "http://h:0/", "http://bad host/", "http://h%0a/", "http://[v1.x]/", "http://a..b/"}) {
    EXPECT_FALSE(parse_url(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace citadel::http::client
