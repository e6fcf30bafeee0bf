#include "filters/headers/headers_filter.h"

#include <gtest/gtest.h>

namespace citadel::filters {
namespace {

TEST(HeaderOps, RemoveThenSetThenAdd) {
  HeaderOps ops;
  ops.remove = {"x-debug"};
  ops.set = {{"X-Env", "prod"}};
  ops.add = {{"X-Tag", "b"}};
  http::HeaderMap h;
  h.add("X-Debug", "1");
  h.add("X-Env", "dev");
  h.add("X-Env", "dev2");
  h.add("X-Tag", "a");
  ops.apply(h);
  EXPECT_EQ(h.find("x-debug"), nullptr);
  EXPECT_EQ(h.count("x-env"), 1u);
  EXPECT_EQ(h.find("x-env")->value, "prod");
  EXPECT_EQ(h.count("x-tag"), 2u);
}

}  // namespace
}  // namespace citadel::filters
