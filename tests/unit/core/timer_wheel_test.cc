#include "core/timer_wheel.h"

#include <gtest/gtest.h>

#include <vector>

namespace citadel::core {
namespace {

struct Probe {
  std::vector<int>* log;
  int id;
  static void fire(void* arg) {
    auto* p = static_cast<Probe*>(arg);
    p->log->push_back(p->id);
  }
};

TEST(TimerWheel, FiresInDeadlineOrderAcrossTurns) {
  TimerWheel wheel(1000);
  std::vector<int> log;
  Probe p1{&log, 1}, p2{&log, 2}, p3{&log, 3};
  Timer t1(&Probe::fire, &p1), t2(&Probe::fire, &p2), t3(&Probe::fire, &p3);
  wheel.arm(t1, 1000 + 50);
  wheel.arm(t2, 1000 + 20'000);  // beyond one turn of the wheel
  wheel.arm(t3, 1000 + 10);
  EXPECT_EQ(wheel.armed_count(), 3u);
  wheel.advance(1000 + 49);
  EXPECT_EQ(log, std::vector<int>({3}));
  wheel.advance(1000 + 60);
  EXPECT_EQ(log, std::vector<int>({3, 1}));
  for (uint64_t t = 1060; t < 1000 + 20'000; t += 500) wheel.advance(t);
  EXPECT_EQ(log.size(), 2u);
  wheel.advance(1000 + 20'001);
  EXPECT_EQ(log, std::vector<int>({3, 1, 2}));
  EXPECT_EQ(wheel.armed_count(), 0u);
}

TEST(TimerWheel, RearmLaterAndCancel) {
  TimerWheel wheel(0);
  std::vector<int> log;
  Probe p{&log, 7};
  Timer t(&Probe::fire, &p);
  wheel.arm(t, 100);
  wheel.arm(t, 300);  // lazily kept in its slot
  wheel.advance(150);
  EXPECT_TRUE(log.empty());
  EXPECT_TRUE(t.armed());
  wheel.advance(301);
  EXPECT_EQ(log.size(), 1u);
  wheel.arm(t, 500);
  wheel.cancel(t);
  wheel.advance(1000);
  EXPECT_EQ(log.size(), 1u);
}

TEST(TimerWheel, NextTimeout) {
  TimerWheel wheel(0);
  EXPECT_EQ(wheel.next_timeout_ms(0), -1);
  std::vector<int> log;
  Probe p{&log, 1};
  Timer t(&Probe::fire, &p);
  wheel.arm(t, 100);
  int next = wheel.next_timeout_ms(0);
  EXPECT_GE(next, 98);
  EXPECT_LE(next, 102);
  {
    Timer gone(&Probe::fire, &p);
    wheel.arm(gone, 10);
  }  // destructor cancels
  EXPECT_EQ(wheel.armed_count(), 1u);
}

}  // namespace
}  // namespace citadel::core
