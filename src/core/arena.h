// A bump allocator for one request's strings (rewritten headers, generated ids).
//
// Owned by one stream on one thread. reset() keeps the first block so that a keep-alive
// connection reuses it request after request without touching malloc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace citadel::core {

class Arena {
 public:
  explicit Arena(size_t block_size = 1024) : block_size_(block_size) {}

  char* allocate(size_t n) {
    if (n > left_) grow(n);
    char* p = cur_;
    cur_ += n;
    left_ -= n;
    return p;
  }

  void* allocate_aligned(size_t n, size_t align) {
    size_t pad = (align - (reinterpret_cast<uintptr_t>(cur_) & (align - 1))) & (align - 1);
    if (n + pad > left_) {
      grow(n + align);
      pad = (align - (reinterpret_cast<uintptr_t>(cur_) & (align - 1))) & (align - 1);
    }
    cur_ += pad;
    left_ -= pad;
    return allocate(n);
  }

  std::string_view copy(std::string_view s) {
    if (s.empty()) return {};
    char* p = allocate(s.size());
    std::memcpy(p, s.data(), s.size());
    return {p, s.size()};
  }

  // Concatenates pieces into one arena string.
  std::string_view concat(std::initializer_list<std::string_view> parts) {
    size_t n = 0;
    for (auto p : parts) n += p.size();
    char* out = allocate(n);
    char* w = out;
    for (auto p : parts) {
      if (!p.empty()) std::memcpy(w, p.data(), p.size());
      w += p.size();
    }
    return {out, n};
  }

  void reset() {
    if (blocks_.size() > 1) blocks_.resize(1);
    if (!blocks_.empty()) {
      cur_ = blocks_[0].data.get();
      left_ = blocks_[0].size;
    }
  }

  // Frees everything (for idle connections).
  void release() {
    blocks_.clear();
    cur_ = nullptr;
    left_ = 0;
  }

 private:
  struct Block {
    std::unique_ptr<char[]> data;
    size_t size;
  };
  void grow(size_t n) {
    size_t size = n > block_size_ ? n : block_size_;
    blocks_.push_back(Block{std::unique_ptr<char[]>(new char[size]), size});
    cur_ = blocks_.back().data.get();
    left_ = size;
  }

  size_t block_size_;
  std::vector<Block> blocks_;
  char* cur_ = nullptr;
  size_t left_ = 0;
};

}  // namespace citadel::core
