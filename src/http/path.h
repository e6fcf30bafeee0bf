// Normalisation of request paths (RFC 3986 sections 6.2.2 and 5.2.4), and the listener options
// that say how routing and forwarding treat a path.
//
// Routing sees the normalised path and, by default, the upstream receives that same path: an
// upstream must never be handed a path that another route would have matched. Pure functions,
// any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace citadel::http {

// What to do with an encoded slash or backslash (%2F, %5C, either case) in a path. Upstreams
// disagree on them (some decode them before splitting segments, some never do), so a path such
// as "/x/..%2Fsecret" can mean "/secret" to one and not to another.
enum class EscapedSlashes : uint8_t {
  kReject,    // 400 (the default)
  kKeep,      // kept encoded: an opaque character inside a segment for routing and forwarding
  kDecode,    // decoded to '/' (both) before dot segments are resolved; routed and forwarded so
  kRedirect,  // decoded as kDecode, and the client is redirected to the decoded path
};

// A listener's path handling.
struct PathNormalizeOptions {
  bool merge_slashes = true;  // "//a///b" -> "/a/b"
  EscapedSlashes escaped_slashes = EscapedSlashes::kReject;
  // The upstream receives the normalised path (what routing saw), else the original target.
  bool forward_normalized = true;
};

enum class PathResult : uint8_t {
  kOk,
  kNotAbsolute,   // the path does not start with '/': `out` is empty
  kEscapedSlash,  // an encoded slash or backslash under kReject
  kRedirect,      // under kRedirect the path held one: `out` is the decoded path to redirect to
};

// True when a segment of `path` is "." or ".." (literally: a normalised path holds no encoded
// ones), which an upstream would resolve.
bool has_dot_segment(std::string_view path);

// True when normalize_path() could change `path`: it holds a '%', a "/." or a "//". A plain path
// (the common case) is used as it is, without a copy.
inline bool path_needs_normalizing(std::string_view path) {
  return path.find('%') != std::string_view::npos || path.find("/.") != std::string_view::npos ||
         path.find("//") != std::string_view::npos;
}

// Decodes percent-encoded unreserved characters (%41 -> A, %2E -> .), upper-cases the hex of the
// remaining escapes (%2f -> %2F), treats encoded slashes as `opts.escaped_slashes` says, removes
// dot segments, and optionally merges slashes. Writes the result into `out` (cleared first; no
// allocation once `out` has grown to the path's size).
PathResult normalize_path(std::string_view path, const PathNormalizeOptions& opts,
                          std::string& out);

}  // namespace citadel::http
