// Absolute http:// and https:// URLs for the HTTP client, parsed with Boost.URL (only this file's
// .cc sees Boost). Any thread; pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace citadel::http::client {

struct Url {
  bool https = false;
  // The host as a resolver or connect() takes it: a name (lower case), an IPv4 literal, or an
  // IPv6 literal without its brackets.
  std::string host;
  bool host_is_ip = false;
  uint16_t port = 80;
  // host[:port] as the Host field carries it (brackets kept around an IPv6 literal; the port
  // only when it is not the scheme's default).
  std::string authority;
  // The request target: the path ("/" when empty) and "?query", as encoded in the URL. The
  // fragment is the client's own and is never sent.
  std::string target;
};

// Parses `text` as an absolute http or https URL. Refuses other schemes, user info (credentials
// belong in header fields, not in URLs that end up in logs), IPvFuture hosts, an empty host,
// and a port outside 1..65535. The error message says which.
core::Result<Url> parse_url(std::string_view text);

}  // namespace citadel::http::client
