// Byte buffers for socket I/O, backed by a per-worker pool of fixed-size blocks.
//
// A Buffer is owned by one connection on one worker thread. An idle keep-alive connection gives
// its blocks back to the pool (NGINX's trick), so it costs little more than its own object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace citadel::core {

// Free list of kBlockSize blocks; one per worker thread, never shared.
class BlockPool {
 public:
  static constexpr size_t kBlockSize = 16 * 1024;
  explicit BlockPool(size_t max_free = 4096) : max_free_(max_free) {}
  ~BlockPool() {
    for (char* b : free_) std::free(b);
  }
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  char* get() {
    if (free_.empty()) return static_cast<char*>(std::malloc(kBlockSize));
    char* b = free_.back();
    free_.pop_back();
    return b;
  }
  void put(char* b) {
    if (free_.size() < max_free_) free_.push_back(b);
    else std::free(b);
  }

 private:
  size_t max_free_;
  std::vector<char*> free_;
};

// A contiguous byte buffer: [data(), data()+size()) is readable, writable space follows.
// Starts as one pool block; grows with malloc up to whatever the owner allows.
class Buffer {
 public:
  explicit Buffer(BlockPool* pool = nullptr) : pool_(pool) {}
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const char* data() const { return base_ + start_; }
  char* data() { return base_ + start_; }
  size_t size() const { return end_ - start_; }
  bool empty() const { return start_ == end_; }
  std::string_view view() const { return {base_ + start_, end_ - start_}; }
  size_t capacity() const { return cap_; }

  // Space to write into, at least `min` bytes (compacting or growing as needed).
  char* prepare(size_t min) {
    if (base_ == nullptr) allocate(min);
    if (cap_ - end_ < min) {
      if (start_ > 0) compact();
      if (cap_ - end_ < min) grow(end_ + min);
    }
    return base_ + end_;
  }
  size_t writable() const { return cap_ - end_; }
  void commit(size_t n) { end_ += n; }
  void append(std::string_view s) {
    if (s.empty()) return;
    std::memcpy(prepare(s.size()), s.data(), s.size());
    end_ += s.size();
  }
  void consume(size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  void clear() { start_ = end_ = 0; }
  // Exchanges contents (and storage) with `other`; both must use the same pool.
  void swap(Buffer& other) {
    std::swap(pool_, other.pool_);
    std::swap(base_, other.base_);
    std::swap(cap_, other.cap_);
    std::swap(start_, other.start_);
    std::swap(end_, other.end_);
  }
  // Keeps the first `n` readable bytes.
  void truncate(size_t n) {
    if (n < size()) end_ = start_ + n;
  }
  // Gives the storage back (only when empty: an idle connection).
  void release() {
    if (base_ == nullptr) return;
    if (pool_ != nullptr && cap_ == BlockPool::kBlockSize) pool_->put(base_);
    else std::free(base_);
    base_ = nullptr;
    cap_ = start_ = end_ = 0;
  }

 private:
  void allocate(size_t min) {
    if (pool_ != nullptr && min <= BlockPool::kBlockSize) {
      base_ = pool_->get();
      cap_ = BlockPool::kBlockSize;
    } else {
      cap_ = min < BlockPool::kBlockSize ? BlockPool::kBlockSize : min;
      base_ = static_cast<char*>(std::malloc(cap_));
    }
  }
  void compact() {
    std::memmove(base_, base_ + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  void grow(size_t need) {
    size_t cap = cap_ * 2;
    while (cap < need) cap *= 2;
    char* nb = static_cast<char*>(std::malloc(cap));
    std::memcpy(nb, base_ + start_, end_ - start_);
    if (pool_ != nullptr && cap_ == BlockPool::kBlockSize) pool_->put(base_);
    else std::free(base_);
    base_ = nb;
    end_ -= start_;
    start_ = 0;
    cap_ = cap;
  }

  BlockPool* pool_;
  char* base_ = nullptr;
  size_t cap_ = 0;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace citadel::core
