#include "proxy/route_regex.h"

#include <gtest/gtest.h>

#include <string>

namespace citadel::proxy {
namespace {

std::string rewrite(std::string_view substitution) {
  auto r = to_re2_rewrite(substitution);
  return r.ok() ? r.value() : "error: " + r.error().message();
}

TEST(RouteRegex, DollarSubstitutionsBecomeRe2Rewrites) {
  EXPECT_EQ(rewrite("/users/$1"), "/users/\\1");
  EXPECT_EQ(rewrite("$0$&$9"), "\\0\\0\\9");
  EXPECT_EQ(rewrite("/v$010"), "/v\\10");  // $nn: two digits at most, as std::regex_replace
  EXPECT_EQ(rewrite("$$1"), "$1");         // an escaped dollar, then the text "1"
  EXPECT_EQ(rewrite("a$b$"), "a$b$");      // a dollar before anything else is itself
  EXPECT_EQ(rewrite("a\\b"), "a\\\\b");    // a backslash is a plain character in the config
  EXPECT_EQ(rewrite(""), "");
}

TEST(RouteRegex, SubstitutionsRe2CannotRewriteAreRefused) {
  EXPECT_EQ(rewrite("$`x").rfind("error: $` (the text around the match) is not supported", 0), 0u)
      << rewrite("$`x");
  EXPECT_EQ(rewrite("$'").rfind("error: $'", 0), 0u);
  EXPECT_EQ(rewrite("/$12"),
            "error: $12: only groups $0..$9 can be named (for group N followed "
            "by a digit, write $0N and the digit)");
}

TEST(RouteRegex, CompileReportsRe2Errors) {
  EXPECT_TRUE(compile_route_regex("^/users/[0-9]+$").ok());
  EXPECT_TRUE(compile_route_regex("\\/x\\d+\\w*\\s?(?:a|b)").ok());
  auto unbalanced = compile_route_regex("(a");
  ASSERT_FALSE(unbalanced.ok());
  EXPECT_EQ(unbalanced.error().message(), "missing ): (a");
  auto backref = compile_route_regex("(a)\\1");
  ASSERT_FALSE(backref.ok());
  EXPECT_EQ(backref.error().message(), "invalid escape sequence: \\1");
  EXPECT_FALSE(compile_route_regex("a(?=b)").ok());  // lookahead
}

}  // namespace
}  // namespace citadel::proxy
