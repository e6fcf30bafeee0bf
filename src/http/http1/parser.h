// Strict HTTP/1.1 head parsing (RFC 9110, RFC 9112).
//
// Ambiguous input is refused, never guessed: a request that could be framed two ways by two
// parsers (the request-smuggling family) gets a 4xx and the connection is closed. Called by the
// HTTP/1 codecs on their worker thread; pure functions over bytes, also driven by the fuzzers.
#pragma once

#include <cstddef>
#include <string_view>

#include "http/message.h"

namespace citadel::http::http1 {

struct ParseLimits {
  size_t max_request_line = 8 * 1024;   // longer: 414
  size_t max_header_count = 100;        // more: 431
  size_t max_head_bytes = 32 * 1024;    // request line + fields; more: 431
};

struct ParseOutcome {
  enum Kind { kIncomplete, kComplete, kError };
  Kind kind = kIncomplete;
  size_t consumed = 0;      // head bytes, including the final empty line (kComplete)
  int status = 0;           // HTTP status to answer with (kError)
  std::string_view reason;  // short static text for logs and the error body (kError)

  static ParseOutcome error(int status, std::string_view reason) {
    return {kError, 0, status, reason};
  }
};

// Returns the offset just past the "\r\n\r\n" that ends a head, or npos. `from` lets a caller
// resume the search where it stopped when more bytes arrive (no rescan of long heads).
size_t find_head_end(std::string_view data, size_t from);

// Parses a complete-or-partial request head at the start of `data`. On kComplete, `out` holds
// views into `data` and its framing fields are filled. Size limits apply while incomplete too.
ParseOutcome parse_request(std::string_view data, const ParseLimits& limits, RequestHead& out);

// Parses an upstream response head. `request_method_head` and the status decide whether a body
// follows (RFC 9112 section 6.3). Errors map to status 502.
ParseOutcome parse_response(std::string_view data, const ParseLimits& limits,
                            bool request_method_head, ResponseHead& out);

bool is_token(std::string_view s);

// The character rules the HTTP/1 parser applies to a request-target and to a Host value, for
// the HTTP/2 codec's :path and :authority (one set of rules whatever the protocol).
bool valid_request_target(std::string_view s);
bool valid_host_value(std::string_view s);

}  // namespace citadel::http::http1
