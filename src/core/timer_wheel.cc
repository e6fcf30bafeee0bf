#include "core/timer_wheel.h"

#include <bit>
#include <cassert>

namespace citadel::core {

Timer::~Timer() {
  if (wheel_ != nullptr) wheel_->cancel(*this);
}

void Timer::unlink() {
  prev_->next_ = next_;
  next_->prev_ = prev_;
  prev_ = next_ = nullptr;
}

TimerWheel::TimerWheel(uint64_t now_ms) : processed_tick_(now_ms / kTickMs) {
  for (auto& s : slots_) s.node.prev_ = s.node.next_ = &s.node;
}

TimerWheel::~TimerWheel() {
  // Detach remaining timers so that their destructors do not touch a dead wheel.
  for (auto& s : slots_) {
    while (s.node.next_ != &s.node) {
      Timer* t = s.node.next_;
      t->unlink();
      t->wheel_ = nullptr;
      t->deadline_ms_ = 0;
    }
  }
}

uint32_t TimerWheel::slot_for(uint64_t deadline_ms) const {
  uint64_t tick = deadline_ms / kTickMs;
  if (tick <= processed_tick_) tick = processed_tick_ + 1;
  if (tick - processed_tick_ >= kSlots) tick = processed_tick_ + kSlots - 1;
  return static_cast<uint32_t>(tick & (kSlots - 1));
}

void TimerWheel::insert(Timer& t) {
  uint32_t slot = slot_for(t.deadline_ms_);
  Timer& head = slots_[slot].node;
  t.next_ = head.next_;
  t.prev_ = &head;
  head.next_->prev_ = &t;
  head.next_ = &t;
  set_bit(slot);
}

void TimerWheel::arm(Timer& t, uint64_t deadline_ms) {
  if (deadline_ms == 0) deadline_ms = 1;
  if (t.prev_ != nullptr) {
    // Later deadline: keep the slot; the timer is re-filed when the slot comes due.
    if (deadline_ms >= t.deadline_ms_) {
      t.deadline_ms_ = deadline_ms;
      return;
    }
    t.unlink();
    --count_;
  }
  t.deadline_ms_ = deadline_ms;
  t.wheel_ = this;
  insert(t);
  ++count_;
}

void TimerWheel::cancel(Timer& t) {
  if (t.prev_ != nullptr) {
    t.unlink();
    --count_;
  }
  t.deadline_ms_ = 0;
}

size_t TimerWheel::advance(uint64_t now_ms) {
  const uint64_t now_tick = now_ms / kTickMs;
  size_t fired = 0;
  if (now_tick <= processed_tick_) return 0;
  uint64_t steps = now_tick - processed_tick_;
  if (steps > kSlots) steps = kSlots;  // a long stall: one full turn visits every slot
  for (uint64_t i = 0; i < steps; ++i) {
    uint64_t tick = processed_tick_ + 1;
    uint32_t slot = static_cast<uint32_t>(tick & (kSlots - 1));
    processed_tick_ = (i + 1 == steps) ? now_tick : tick;
    if (((bits_[slot >> 6] >> (slot & 63)) & 1) == 0) continue;
    // Move the slot's timers to a local list: callbacks may arm into this very slot.
    Timer& head = slots_[slot].node;
    clear_bit(slot);
    if (head.next_ == &head) continue;  // its timers were cancelled
    Timer local{nullptr, nullptr};
    local.next_ = head.next_;
    local.prev_ = head.prev_;
    local.next_->prev_ = &local;
    local.prev_->next_ = &local;
    head.next_ = head.prev_ = &head;
    while (local.next_ != &local) {
      Timer* t = local.next_;
      t->unlink();
      if (t->deadline_ms_ <= now_ms) {
        --count_;
        t->deadline_ms_ = 0;
        ++fired;
        t->fn_(t->arg_);
      } else {
        insert(*t);
      }
    }
  }
  return fired;
}

int TimerWheel::next_timeout_ms(uint64_t now_ms) const {
  if (count_ == 0) return -1;
  const uint64_t base = processed_tick_ + 1;
  const uint32_t start = static_cast<uint32_t>(base & (kSlots - 1));
  constexpr uint32_t kWords = kSlots / 64;
  // Scan the bitmap from `start`; the last step revisits the first word's lower bits.
  for (uint32_t k = 0; k <= kWords; ++k) {
    uint32_t word = ((start >> 6) + k) % kWords;
    uint64_t bits = bits_[word];
    if (k == 0) bits &= ~0ull << (start & 63);
    if (bits != 0) {
      uint32_t slot = word * 64 + static_cast<uint32_t>(std::countr_zero(bits));
      uint32_t dist = (slot - start) & (kSlots - 1);
      uint64_t due_ms = (base + dist) * kTickMs;
      return due_ms <= now_ms ? 0 : static_cast<int>(due_ms - now_ms);
    }
  }
  return static_cast<int>(kSlots * kTickMs);
}

}  // namespace citadel::core
