// One piece of a message body as filters see it.
//
// A piece is either borrowed (a view into a codec's read buffer or into data the chain holds,
// valid during the call) or owned (a core::Buffer). Reading never copies; the first change to a
// borrowed piece copies it into the owned buffer the chain lends. So a filter that only looks
// costs nothing, and a filter can still replace, append, trim or take data (compression, a WAF
// that keeps the tail of a chunk to match across boundaries). Worker thread only.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/buffer.h"

namespace citadel::pipeline {

class Body {
 public:
  // `storage` receives the bytes once they are changed; it outlives the Body.
  explicit Body(core::Buffer& storage) : buf_(&storage) {}
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;

  // Makes the body a view of `data` (nothing copied).
  void borrow(std::string_view data) {
    view_ = data;
    owned_ = false;
  }
  // Makes the body the bytes of `buffer`, which changes in place.
  void adopt(core::Buffer& buffer) {
    buf_ = &buffer;
    owned_ = true;
  }

  std::string_view view() const { return owned_ ? buf_->view() : view_; }
  size_t size() const { return view().size(); }
  bool empty() const { return size() == 0; }

  // `data` must not point into this body.
  void append(std::string_view data) {
    materialize();
    buf_->append(data);
  }
  // Replaces the whole body with `data`, which must not point into this body.
  void replace(std::string_view data) {
    buf_->clear();
    buf_->append(data);
    owned_ = true;
  }
  // Drops the first `n` bytes.
  void drain(size_t n) {
    if (n >= size()) return clear();
    if (owned_) buf_->consume(n);
    else view_.remove_prefix(n);
  }
  // Keeps the first `n` bytes.
  void truncate(size_t n) {
    if (n >= size()) return;
    if (owned_) buf_->truncate(n);
    else view_ = view_.substr(0, n);
  }
  // Moves the last `n` bytes to the end of `out` (a filter holding back a tail).
  void move_suffix_to(size_t n, core::Buffer& out) {
    std::string_view v = view();
    if (n > v.size()) n = v.size();
    out.append(v.substr(v.size() - n));
    truncate(v.size() - n);
  }
  void clear() {
    view_ = {};
    if (owned_) buf_->clear();
  }
  // The bytes as an owned buffer (copies a borrowed piece first).
  core::Buffer& buffer() {
    materialize();
    return *buf_;
  }
  bool owned() const { return owned_; }

 private:
  void materialize() {
    if (owned_) return;
    buf_->clear();
    buf_->append(view_);
    owned_ = true;
  }
  core::Buffer* buf_;
  std::string_view view_;
  bool owned_ = false;
};

}  // namespace citadel::pipeline
