// Normalisation of request paths for routing (RFC 3986 sections 6.2.2 and 5.2.4).
//
// Routing sees the normalised path; the original target is what is forwarded unless a route
// rewrites it. Pure function, any thread.
#pragma once

#include <string>
#include <string_view>

namespace citadel::http {

struct PathNormalizeOptions {
  bool merge_slashes = true;  // "//a///b" -> "/a/b"
};

// Decodes percent-encoded unreserved characters (%41 -> A, %2E -> .), upper-cases the hex of the
// remaining escapes (%2f -> %2F), removes dot segments, and optionally merges slashes. Writes the
// result into `out` (cleared first). Returns false when the path does not start with '/'.
bool normalize_path(std::string_view path, const PathNormalizeOptions& opts, std::string& out);

}  // namespace citadel::http
