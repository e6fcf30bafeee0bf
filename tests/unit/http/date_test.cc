#include "http/date.h"

#include <gtest/gtest.h>

namespace citadel::http {
namespace {

TEST(DateCache, FormatsImfFixdate) {
  DateCache d;
  // RFC 9110 section 5.6.7's example.
  EXPECT_EQ(d.at(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(d.at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(d.at(1795996800), "Mon, 30 Nov 2026 00:00:00 GMT");
}

TEST(DateCache, ReformatsOnlyWhenTheSecondChanges) {
  DateCache d;
  std::string_view a = d.at(784111777);
  std::string_view b = d.at(784111777);
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(d.at(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
}

}  // namespace
}  // namespace citadel::http
