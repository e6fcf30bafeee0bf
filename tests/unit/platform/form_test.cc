#include "platform/form.h"

#include <gtest/gtest.h>

namespace citadel::platform {
namespace {

TEST(Form, DecodesPlusAndEscapes) {
  std::map<std::string, std::string> f;
  std::string why;
  ASSERT_TRUE(parse_form("grant_type=password&username=a%40b.c&password=p+w%2Bx%00&empty=&flag",
                         f, why));
  EXPECT_EQ(f["grant_type"], "password");
  EXPECT_EQ(f["username"], "a@b.c");
  EXPECT_EQ(f["password"], std::string("p w+x\0", 6));
  EXPECT_EQ(f["empty"], "");
  EXPECT_EQ(f.count("flag"), 1u);
  ASSERT_TRUE(parse_form("&&a=1&&", f, why));
  EXPECT_EQ(f.size(), 1u);
  ASSERT_TRUE(parse_form("", f, why));
  EXPECT_TRUE(f.empty());
}

TEST(Form, RefusesWhatCouldBeReadTwoWays) {
  std::map<std::string, std::string> f;
  std::string why;
  EXPECT_FALSE(parse_form("a=1&a=2", f, why));
  EXPECT_EQ(why, "a parameter given twice");
  EXPECT_FALSE(parse_form("a=1&%61=2", f, why));  // the same name, escaped
  for (const char* bad : {"a=%", "a=%4", "a=%zz", "%g1=x", "a=%4g"}) {
    EXPECT_FALSE(parse_form(bad, f, why)) << bad;
  }
  std::string many;
  for (int i = 0; i < 65; ++i) many += "p" + std::to_string(i) + "=x&";
  EXPECT_FALSE(parse_form(many, f, why));
}

TEST(Form, MediaTypeIgnoresCaseAndParameters) {
  http::RequestHead r;
  EXPECT_FALSE(has_media_type(r, "application/json"));
  r.headers.add("Content-Type", " Application/JSON ; charset=utf-8");
  EXPECT_TRUE(has_media_type(r, "application/json"));
  EXPECT_FALSE(has_media_type(r, "application/x-www-form-urlencoded"));
  http::RequestHead j;
  j.headers.add("Content-Type", "application/jsonx");
  EXPECT_FALSE(has_media_type(j, "application/json"));
}

}  // namespace
}  // namespace citadel::platform
