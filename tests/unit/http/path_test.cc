#include "http/path.h"

#include <gtest/gtest.h>

namespace citadel::http {
namespace {

std::string norm(std::string_view in, bool merge = true) {
  std::string out;
  EXPECT_TRUE(normalize_path(in, {merge}, out)) << in;
  return out;
}

TEST(NormalizePath, DotSegments) {
  EXPECT_EQ(norm("/a/b/../c"), "/a/c");
  EXPECT_EQ(norm("/a/./b"), "/a/b");
  EXPECT_EQ(norm("/../../etc/passwd"), "/etc/passwd");
  EXPECT_EQ(norm("/a/b/.."), "/a/");
  EXPECT_EQ(norm("/a/."), "/a/");
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/.."), "/");
}

TEST(NormalizePath, PercentDecodingOfUnreservedOnly) {
  EXPECT_EQ(norm("/%61%62c"), "/abc");
  EXPECT_EQ(norm("/a/%2e%2E/b"), "/b");  // encoded dot segments are dot segments
  EXPECT_EQ(norm("/a%2fb"), "/a%2Fb");   // an encoded slash stays encoded
  EXPECT_EQ(norm("/a%20b"), "/a%20b");
}

TEST(NormalizePath, Slashes) {
  EXPECT_EQ(norm("//a///b/"), "/a/b/");
  EXPECT_EQ(norm("//a///b/", false), "//a///b/");
}

TEST(NormalizePath, RejectsRelative) {
  std::string out;
  EXPECT_FALSE(normalize_path("a/b", {}, out));
}

}  // namespace
}  // namespace citadel::http
