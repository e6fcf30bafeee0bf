// A hashed timer wheel for connection and request timeouts.
//
// Owned by one EventLoop and used only on its thread. Re-arming a timer to a later deadline (what
// every keep-alive request does) is O(1) and touches no list: the timer stays in its slot and is
// re-filed when that slot comes due. A bitmap of non-empty slots finds the next due slot quickly,
// so an idle loop sleeps until the next real deadline.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace citadel::core {

class TimerWheel;

// An intrusive timer: embed it in the object that owns the timeout. The callback runs on the
// loop's thread; it may re-arm or cancel any timer, including its own.
class Timer {
 public:
  using Fn = void (*)(void* arg);
  Timer(Fn fn, void* arg) : fn_(fn), arg_(arg) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();

  bool armed() const { return deadline_ms_ != 0; }
  uint64_t deadline_ms() const { return deadline_ms_; }

 private:
  friend class TimerWheel;
  void unlink();

  Fn fn_;
  void* arg_;
  uint64_t deadline_ms_ = 0;  // 0: not armed
  Timer* prev_ = nullptr;     // linked into a slot list while non-null
  Timer* next_ = nullptr;
  TimerWheel* wheel_ = nullptr;
};

class TimerWheel {
 public:
  static constexpr uint64_t kTickMs = 2;
  static constexpr uint32_t kSlots = 4096;  // ~8 s of span; later deadlines go round again

  explicit TimerWheel(uint64_t now_ms);
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms `t` to fire at `deadline_ms` (monotonic ms), replacing any earlier arming.
  void arm(Timer& t, uint64_t deadline_ms);
  void cancel(Timer& t);

  // Fires every timer whose deadline is <= now_ms. Returns how many fired.
  size_t advance(uint64_t now_ms);

  // Milliseconds until the next slot with timers is due (0 if overdue), or -1 when none is armed.
  int next_timeout_ms(uint64_t now_ms) const;

  size_t armed_count() const { return count_; }

 private:
  struct Sentinel {
    Timer node{nullptr, nullptr};
  };
  void insert(Timer& t);
  uint32_t slot_for(uint64_t deadline_ms) const;
  void set_bit(uint32_t slot) { bits_[slot >> 6] |= 1ull << (slot & 63); }
  void clear_bit(uint32_t slot) { bits_[slot >> 6] &= ~(1ull << (slot & 63)); }

  std::array<Sentinel, kSlots> slots_;
  std::array<uint64_t, kSlots / 64> bits_{};
  uint64_t processed_tick_;  // every tick <= this has been processed
  size_t count_ = 0;
};

}  // namespace citadel::core
