#include "http/path.h"

#include <gtest/gtest.h>

namespace citadel::http {
namespace {

std::string norm(std::string_view in, bool merge = true,
                 EscapedSlashes esc = EscapedSlashes::kKeep) {
  std::string out;
  PathNormalizeOptions opts;
  opts.merge_slashes = merge;
  opts.escaped_slashes = esc;
  EXPECT_EQ(normalize_path(in, opts, out), PathResult::kOk) << in;
  return out;
}

PathResult result(std::string_view in, EscapedSlashes esc, std::string* out_copy = nullptr) {
  std::string out;
  PathNormalizeOptions opts;
  opts.escaped_slashes = esc;
  PathResult r = normalize_path(in, opts, out);
  if (out_copy != nullptr) *out_copy = out;
  return r;
}

TEST(NormalizePath, DotSegments) {
  EXPECT_EQ(norm("/a/b/../c"), "/a/c");
  EXPECT_EQ(norm("/a/./b"), "/a/b");
  EXPECT_EQ(norm("/../../etc/passwd"), "/etc/passwd");
  EXPECT_EQ(norm("/a/b/.."), "/a/");
  EXPECT_EQ(norm("/a/."), "/a/");
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/.."), "/");
  EXPECT_EQ(norm("/x/../secret"), "/secret");
  EXPECT_EQ(norm("/a/.b/..c/d"), "/a/.b/..c/d");  // dots inside names are names
}

TEST(NormalizePath, PercentDecodingOfUnreservedOnly) {
  EXPECT_EQ(norm("/%61%62c"), "/abc");
  EXPECT_EQ(norm("/a/%2e%2E/b"), "/b");  // encoded dot segments are dot segments
  EXPECT_EQ(norm("/%2e%2e/secret"), "/secret");
  EXPECT_EQ(norm("/a/.%2e/b"), "/b");
  EXPECT_EQ(norm("/a%20b"), "/a%20b");
  EXPECT_EQ(norm("/a%3fb"), "/a%3Fb");  // other escapes keep their meaning, hex upper-cased
}

TEST(NormalizePath, Slashes) {
  EXPECT_EQ(norm("//a///b/"), "/a/b/");
  EXPECT_EQ(norm("//a///b/", false), "//a///b/");
  EXPECT_EQ(norm("/a//../b", false), "/a/b");  // ".." removes the empty segment
}

TEST(NormalizePath, EscapedSlashesAreRejectedByDefault) {
  EXPECT_EQ(PathNormalizeOptions().escaped_slashes, EscapedSlashes::kReject);
  for (const char* p : {"/%2fsecret/file", "/x/..%2Fsecret/file", "/a%5cb", "/a%5C..%5Cb"}) {
    EXPECT_EQ(result(p, EscapedSlashes::kReject), PathResult::kEscapedSlash) << p;
  }
  EXPECT_EQ(result("/a%2b", EscapedSlashes::kReject), PathResult::kOk);  // '+', not a slash
}

TEST(NormalizePath, KeptEscapedSlashesAreOpaque) {
  EXPECT_EQ(norm("/a%2fb"), "/a%2Fb");
  EXPECT_EQ(norm("/%2fsecret/file"), "/%2Fsecret/file");
  // Not a separator: "..%2F" is a name, so no dot segment is resolved across it.
  EXPECT_EQ(norm("/x/..%2fsecret/file"), "/x/..%2Fsecret/file");
  EXPECT_EQ(norm("/x/a%5c..%5cb"), "/x/a%5C..%5Cb");
}

TEST(NormalizePath, DecodedEscapedSlashesSeparateSegments) {
  const auto d = EscapedSlashes::kDecode;
  EXPECT_EQ(norm("/%2fsecret/file", true, d), "/secret/file");
  EXPECT_EQ(norm("/%2fsecret/file", false, d), "//secret/file");
  EXPECT_EQ(norm("/x/..%2fsecret/file", true, d), "/secret/file");
  EXPECT_EQ(norm("/x/..%5Csecret", true, d), "/secret");  // a backslash is a slash too
  EXPECT_EQ(norm("/a%2F", true, d), "/a/");
}

TEST(NormalizePath, RedirectGivesTheDecodedPath) {
  std::string out;
  EXPECT_EQ(result("/x/..%2fsecret/file", EscapedSlashes::kRedirect, &out), PathResult::kRedirect);
  EXPECT_EQ(out, "/secret/file");
  EXPECT_EQ(result("/a/../b", EscapedSlashes::kRedirect, &out), PathResult::kOk);
  EXPECT_EQ(out, "/b");
}

TEST(NormalizePath, RejectsRelative) {
  std::string out;
  EXPECT_EQ(normalize_path("a/b", {}, out), PathResult::kNotAbsolute);
  EXPECT_EQ(normalize_path("", {}, out), PathResult::kNotAbsolute);
}

TEST(NormalizePath, PlainPathsNeedNoWork) {
  EXPECT_FALSE(path_needs_normalizing("/api/v1/users"));
  EXPECT_FALSE(path_needs_normalizing("/a.b/c"));
  EXPECT_TRUE(path_needs_normalizing("/a/../b"));
  EXPECT_TRUE(path_needs_normalizing("/a//b"));
  EXPECT_TRUE(path_needs_normalizing("/a%2Fb"));
  EXPECT_TRUE(path_needs_normalizing("/a/.hidden"));  // checked, and left as it is
  EXPECT_EQ(norm("/a/.hidden"), "/a/.hidden");
}

TEST(NormalizePath, NoAllocationOnceTheOutputHasGrown) {
  std::string out;
  out.reserve(64);
  const char* before = out.data();
  PathNormalizeOptions opts;
  for (const char* p : {"/a/../b/%41", "/x//y/./z", "/%2e%2e/q"}) {
    ASSERT_EQ(normalize_path(p, opts, out), PathResult::kOk);
    EXPECT_EQ(out.data(), before) << p;
  }
}

}  // namespace
}  // namespace citadel::http
