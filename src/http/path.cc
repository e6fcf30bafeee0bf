#include "http/path.h"

namespace citadel::http {
namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

}  // namespace

PathResult normalize_path(std::string_view path, const PathNormalizeOptions& opts,
                          std::string& out) {
  out.clear();
  if (path.empty() || path.front() != '/') return PathResult::kNotAbsolute;
  out.reserve(path.size() + 1);
  // One pass: each segment is decoded straight into `out` behind its '/', then judged ("." and
  // ".." removed, an empty one dropped when merging). A decoded %2F/%5C ends a segment as a '/'
  // does, so that "..%2F" is a dot segment too.
  const size_t n = path.size();
  size_t i = 1;                 // past the leading '/'
  bool trailing_slash = false;  // the last segment removed was a directory ("a/." -> "a/")
  bool decoded_slash = false;
  while (true) {
    const size_t seg_start = out.size() + 1;
    out.push_back('/');
    bool more = false;  // a separator ended the segment: another one follows
    while (i < n) {
      const char c = path[i];
      if (c == '/') {
        ++i;
        more = true;
        break;
      }
      if (c == '%' && i + 2 < n && hexval(path[i + 1]) >= 0 && hexval(path[i + 2]) >= 0) {
        const auto v = static_cast<unsigned char>(hexval(path[i + 1]) * 16 + hexval(path[i + 2]));
        i += 3;
        if (v == '/' || v == '\\') {
          if (opts.escaped_slashes == EscapedSlashes::kReject) {
            out.clear();
            return PathResult::kEscapedSlash;
          }
          if (opts.escaped_slashes != EscapedSlashes::kKeep) {
            decoded_slash = true;
            more = true;
            break;
          }
        }
        if (unreserved(v)) {
          out.push_back(static_cast<char>(v));
        } else {
          static constexpr char kHex[] = "0123456789ABCDEF";
          out.push_back('%');
          out.push_back(kHex[v >> 4]);
          out.push_back(kHex[v & 15]);
        }
        continue;
      }
      out.push_back(c);
      ++i;
    }
    const std::string_view seg(out.data() + seg_start, out.size() - seg_start);
    if (seg == ".") {
      out.resize(seg_start - 1);
      trailing_slash = true;
    } else if (seg == "..") {
      out.resize(seg_start - 1);
      const size_t cut = out.rfind('/');
      out.resize(cut == std::string::npos ? 0 : cut);
      trailing_slash = true;
    } else if (seg.empty() && opts.merge_slashes) {
      out.resize(seg_start - 1);
      trailing_slash = true;
    } else {
      trailing_slash = false;
    }
    if (!more) break;
  }
  if (out.empty() || trailing_slash) out.push_back('/');
  return decoded_slash && opts.escaped_slashes == EscapedSlashes::kRedirect ? PathResult::kRedirect
                                                                            : PathResult::kOk;
}

bool has_dot_segment(std::string_view path) {
  size_t i = 0;
  while (i <= path.size()) {
    size_t end = path.find('/', i);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(i, end - i);
    if (seg == "." || seg == "..") return true;
    i = end + 1;
  }
  return false;
}

}  // namespace citadel::http
