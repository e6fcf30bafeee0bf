#include "proxy/router.h"

#include <cctype>

namespace citadel::proxy {

std::string_view host_without_port(std::string_view authority, std::string& buf) {
  std::string_view h = authority;
  if (!h.empty() && h.front() == '[') {
    size_t close = h.find(']');
    h = close == std::string_view::npos ? h : h.substr(0, close + 1);
  } else {
    size_t colon = h.rfind(':');
    if (colon != std::string_view::npos) h = h.substr(0, colon);
    // "example.com." is the same name as "example.com" (a fully qualified name): route both
    // alike, or a trailing dot would walk past a host rule.
    if (h.size() > 1 && h.back() == '.') h.remove_suffix(1);
  }
  bool lower = true;
  for (char c : h) lower = lower && !(c >= 'A' && c <= 'Z');
  if (!lower) {
    buf.assign(h);
    for (char& c : buf) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    return buf;
  }
  return h;
}

bool valid_authority(std::string_view a) {
  std::string_view port;
  if (!a.empty() && a.front() == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : a.substr(1, close - 1)) {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                      c == ':' || c == '.';
      if (!ok) return false;
    }
    std::string_view rest = a.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    port = rest.empty() ? rest : rest.substr(1);
  } else {
    const size_t colon = a.find(':');
    const std::string_view host = a.substr(0, colon);
    if (host.empty()) return false;
    for (size_t i = 0; i < host.size(); ++i) {
      const char c = host[i];
      if (c == '[' || c == ']' || c == '@') return false;
      // No empty labels (".a", "a..b", "."); one trailing dot (a fully qualified name) is fine.
      if (c == '.' && (i == 0 || host[i - 1] == '.')) return false;
      if (c == '%' &&
          (i + 2 >= host.size() || !std::isxdigit(static_cast<unsigned char>(host[i + 1])) ||
           !std::isxdigit(static_cast<unsigned char>(host[i + 2])))) {
        return false;
      }
    }
    port = colon == std::string_view::npos ? std::string_view() : a.substr(colon + 1);
  }
  if (port.size() > 5) return false;
  uint32_t v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  return v <= 65535;
}

bool Route::matches(const http::RequestHead& head, std::string_view host,
                    std::string_view norm_path) const {
  if (!exact_hosts.empty() || !wildcard_hosts.empty()) {
    bool ok = false;
    for (const auto& h : exact_hosts) {
      if (h == host) {
        ok = true;
        break;
      }
    }
    if (!ok) {
      for (const auto& suffix : wildcard_hosts) {
        // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
        if (host.size() > suffix.size() &&
            host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
          ok = true;
          break;
        }
      }
    }
    if (!ok) return false;
  }
  switch (path_kind) {
    case RouteMatchConfig::kAny:
      break;
    case RouteMatchConfig::kExact:
      if (norm_path != path) return false;
      break;
    case RouteMatchConfig::kPrefix:
      if (norm_path.substr(0, path.size()) != path) return false;
      break;
    case RouteMatchConfig::kRegex:
      // A route built without its regex (never by build_snapshot) matches nothing.
      if (path_regex == nullptr ||
          !re2::RE2::FullMatch(re2::StringPiece(norm_path.data(), norm_path.size()), *path_regex)) {
        return false;
      }
      break;
  }
  if (!methods.empty()) {
    bool ok = false;
    for (const auto& m : methods) ok = ok || m == head.method;
    if (!ok) return false;
  }
  for (const auto& hm : headers) {
    const http::HeaderField* f = head.headers.find(hm.spec.name);
    switch (hm.spec.kind) {
      case HeaderMatch::kPresent:
        if (f == nullptr) return false;
        break;
      case HeaderMatch::kAbsent:
        if (f != nullptr) return false;
        break;
      case HeaderMatch::kExact:
        if (f == nullptr || f->value != hm.spec.value) return false;
        break;
      case HeaderMatch::kRegex:
        if (f == nullptr || hm.re == nullptr ||
            !re2::RE2::FullMatch(re2::StringPiece(f->value.data(), f->value.size()), *hm.re)) {
          return false;
        }
        break;
    }
  }
  return true;
}

bool Route::lists_method(std::string_view method) const {
  for (const auto& m : methods) {
    if (http::iequals(m, method)) return true;
  }
  return false;
}

bool Route::allows_upgrade(std::string_view upgrade) const {
  bool any = false;
  bool all = true;
  http::for_each_list_element(upgrade, [&](std::string_view proto) {
    any = true;
    std::string_view name = proto.substr(0, proto.find('/'));
    bool listed = false;
    for (const auto& u : upgrades) listed = listed || http::iequals(u, name);
    // h2c is refused by the config loader; this keeps it out whatever built the route.
    all = all && listed && !http::iequals(name, "h2c");
  });
  return any && all;
}

const Route* RouteTable::match(const http::RequestHead& head, std::string_view norm_path) const {
  std::string buf;
  std::string_view host = host_without_port(head.authority, buf);
  for (const auto& r : routes_) {
    if (r->matches(head, host, norm_path)) return r.get();
  }
  return nullptr;
}

Rewrite rewrite_target(const Route& r, std::string_view path, std::string_view query,
                       std::string& out) {
  const RewriteConfig& rw = r.rewrite;
  if (rw.strip_prefix) {
    const std::string& p = *rw.strip_prefix;
    std::string_view rest = path.substr(0, p.size()) == p ? path.substr(p.size()) : path;
    out.clear();
    if (rest.empty() || rest.front() != '/') out.push_back('/');
    out.append(rest);
  } else if (rw.replace_prefix) {
    const auto& [from, to] = *rw.replace_prefix;
    out.clear();
    if (path.substr(0, from.size()) == from) {
      out.append(to);
      out.append(path.substr(from.size()));
    } else {
      out.append(path);
    }
    if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  } else if (rw.regex && r.rewrite_regex != nullptr) {
    // Every match is replaced, as std::regex_replace did (usually one: patterns are anchored).
    out.assign(path);
    re2::RE2::GlobalReplace(&out, *r.rewrite_regex, rw.re2_substitution);
    if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  } else {
    return Rewrite::kNone;
  }
  // A substitution may bring a query of its own ("/users?id=$1"): the client's is added to it.
  const size_t own_query = out.find('?');
  if (http::has_dot_segment(std::string_view(out).substr(0, own_query))) return Rewrite::kRefused;
  if (!query.empty()) {
    out.push_back(own_query == std::string::npos ? '?' : '&');
    out.append(query);
  }
  return Rewrite::kRewritten;
}

}  // namespace citadel::proxy
