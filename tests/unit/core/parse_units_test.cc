#include "core/parse_units.h"

#include <gtest/gtest.h>

namespace citadel::core {
namespace {

TEST(ParseUnits, Durations) {
  EXPECT_EQ(parse_duration_ms("500ms"), 500u);
  EXPECT_EQ(parse_duration_ms("2s"), 2000u);
  EXPECT_EQ(parse_duration_ms("5m"), 300000u);
  EXPECT_EQ(parse_duration_ms("1h"), 3600000u);
  EXPECT_EQ(parse_duration_ms("2d"), 172800000u);
  EXPECT_FALSE(parse_duration_ms("5"));
  EXPECT_FALSE(parse_duration_ms("s"));
  EXPECT_FALSE(parse_duration_ms("1.5s"));
  EXPECT_FALSE(parse_duration_ms("-1s"));
}

TEST(ParseUnits, Sizes) {
  EXPECT_EQ(parse_size_bytes("64KiB"), 65536u);
  EXPECT_EQ(parse_size_bytes("10MiB"), 10u << 20);
  EXPECT_EQ(parse_size_bytes("1GiB"), 1u << 30);
  EXPECT_EQ(parse_size_bytes("100"), 100u);
  EXPECT_FALSE(parse_size_bytes("10MB"));
  EXPECT_FALSE(parse_size_bytes("99999999999999999999GiB"));
}

}  // namespace
}  // namespace citadel::core
