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

bool normalize_path(std::string_view path, const PathNormalizeOptions& opts, std::string& out) {
  out.clear();
  if (path.empty() || path.front() != '/') return false;
  // Pass 1: percent-decoding of unreserved characters, escapes upper-cased.
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%' && i + 2 < path.size() + 0 && hexval(path[i + 1]) >= 0 && hexval(path[i + 2]) >= 0) {
      unsigned char v = static_cast<unsigned char>(hexval(path[i + 1]) * 16 + hexval(path[i + 2]));
      if (unreserved(v)) {
        decoded.push_back(static_cast<char>(v));
      } else {
        static constexpr char kHex[] = "0123456789ABCDEF";
        decoded.push_back('%');
        decoded.push_back(kHex[v >> 4]);
        decoded.push_back(kHex[v & 15]);
      }
      i += 2;
    } else {
      decoded.push_back(c);
    }
  }
  // Pass 2: split into segments, drop "." and resolve "..", optionally drop empty segments.
  out.reserve(decoded.size());
  size_t i = 1;  // skip the leading '/'
  bool trailing_slash = false;
  while (i <= decoded.size()) {
    size_t slash = decoded.find('/', i);
    if (slash == std::string::npos) slash = decoded.size();
    std::string_view seg(decoded.data() + i, slash - i);
    bool last = slash == decoded.size();
    if (seg == ".") {
      trailing_slash = true;
    } else if (seg == "..") {
      size_t cut = out.rfind('/');
      out.resize(cut == std::string::npos ? 0 : cut);
      trailing_slash = true;
    } else if (seg.empty() && opts.merge_slashes) {
      trailing_slash = true;
    } else {
      out.push_back('/');
      out.append(seg);
      trailing_slash = false;
    }
    if (last) break;
    i = slash + 1;
  }
  if (out.empty() || trailing_slash) out.push_back('/');
  return true;
}

}  // namespace citadel::http
