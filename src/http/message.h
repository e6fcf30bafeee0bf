// Request and response heads, independent of the wire protocol (HTTP/1.1 now, HTTP/2 next).
//
// Strings are views: into the codec's copy of the received head, or into the stream's arena
// when a filter rewrites them. Owned by one stream on one worker thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "http/headers.h"

namespace citadel::http {

enum class BodyFraming : uint8_t {
  kNone,           // no body
  kContentLength,  // exactly content_length bytes
  kChunked,        // chunked transfer coding (HTTP/1.1)
  kUntilClose,     // response body delimited by connection close
};

struct RequestHead {
  std::string_view method;
  std::string_view target;     // as received (see http/path.h for what is forwarded)
  std::string_view path;       // the target's path, before the query
  std::string_view query;      // without the '?', empty when absent
  std::string_view authority;  // Host header, or the authority of an absolute-form target
  std::string_view scheme;     // "http" or "https" as seen by Citadel's listener
  uint8_t version_minor = 1;   // HTTP/1.x minor; 1 for HTTP/2 streams
  uint8_t version_major = 1;   // 2 for an HTTP/2 stream (the protocol the client spoke)
  HeaderMap headers;

  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
  bool upgrade = false;        // Connection: upgrade + Upgrade; cleared when refused
  bool is_head = false;

  // Clears for the next request, keeping the header storage's capacity.
  void reset() {
    HeaderMap h = std::move(headers);
    h.clear();
    *this = RequestHead();
    headers = std::move(h);
  }
};

struct ResponseHead {
  int status = 200;
  std::string_view reason;
  uint8_t version_minor = 1;
  HeaderMap headers;

  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;

  void reset() {
    HeaderMap h = std::move(headers);
    h.clear();
    *this = ResponseHead();
    headers = std::move(h);
  }
};

std::string_view reason_phrase(int status);

}  // namespace citadel::http
