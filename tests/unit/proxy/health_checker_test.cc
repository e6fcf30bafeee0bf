#include "proxy/health_checker.h"

#include <gtest/gtest.h>

namespace citadel::proxy {
namespace {

using Change = HealthState::Change;

TEST(HealthState, Thresholds) {
  HealthState s(2, 3, true);
  EXPECT_EQ(s.record(false), Change::kNone);
  EXPECT_EQ(s.record(false), Change::kNone);
  EXPECT_EQ(s.record(false), Change::kBecameUnhealthy);
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.record(false), Change::kNone);
  EXPECT_EQ(s.record(true), Change::kNone);
  EXPECT_EQ(s.record(true), Change::kBecameHealthy);
  EXPECT_TRUE(s.healthy());
}

TEST(HealthState, StreaksReset) {
  HealthState s(1, 2, true);
  EXPECT_EQ(s.record(false), Change::kNone);
  EXPECT_EQ(s.record(true), Change::kNone);  // breaks the failure streak
  EXPECT_EQ(s.record(false), Change::kNone);
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.record(false), Change::kBecameUnhealthy);
  EXPECT_EQ(s.record(true), Change::kBecameHealthy);
}

}  // namespace
}  // namespace citadel::proxy
