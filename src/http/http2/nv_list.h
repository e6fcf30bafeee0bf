// What both HTTP/2 codecs need to hand header fields to nghttp2: the name/value array nghttp2
// takes (built over one string, so that a head costs two allocations at most and none once the
// list is reused), and the field rules of RFC 9113 8.2. Internal to http/http2/*.cc (it brings
// nghttp2's header along); worker thread only.
#pragma once

#include <nghttp2/nghttp2.h>

#include <string>
#include <string_view>
#include <vector>

#include "core/ascii.h"
#include "http/headers.h"

namespace citadel::http::http2 {

using core::ascii_lower;

// Fields HTTP/2 forbids (RFC 9113 8.2.2) or that its codecs write themselves: connection
// options, framing, and `te` (only `te: trailers` may pass, which callers add back).
inline bool connection_specific(std::string_view n) {
  return iequals(n, "connection") || iequals(n, "keep-alive") || iequals(n, "proxy-connection") ||
         iequals(n, "transfer-encoding") || iequals(n, "upgrade") || iequals(n, "te") ||
         iequals(n, "content-length") || iequals(n, "http2-settings");
}

class NvList {
 public:
  void clear() {
    text_.clear();
    spans_.clear();
  }
  // Appends a field; `lower`: lower-case the name (HTTP/2 names are lower case).
  void add(std::string_view n, std::string_view v, bool lower = true) {
    size_t no = text_.size();
    text_.append(n);
    if (lower) {
      for (size_t i = no; i < text_.size(); ++i) text_[i] = ascii_lower(text_[i]);
    }
    size_t vo = text_.size();
    text_.append(v);
    spans_.push_back({no, vo, text_.size()});
  }
  // The array for nghttp2 (which copies it during the submit call): valid until the next add.
  std::vector<nghttp2_nv>& build() {
    nv_.clear();
    for (const auto& s : spans_) {
      nghttp2_nv nv;
      nv.name = reinterpret_cast<uint8_t*>(text_.data() + s.name);
      nv.namelen = s.value - s.name;
      nv.value = reinterpret_cast<uint8_t*>(text_.data() + s.value);
      nv.valuelen = s.end - s.value;
      nv.flags = NGHTTP2_NV_FLAG_NONE;
      nv_.push_back(nv);
    }
    return nv_;
  }

 private:
  struct Span {
    size_t name, value, end;
  };
  std::string text_;
  std::vector<Span> spans_;
  std::vector<nghttp2_nv> nv_;
};

}  // namespace citadel::http::http2
