#include "proxy/forwarding.h"

namespace citadel::proxy {

using http::iequals;

namespace {

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2: return iequals(name, "te");
    case 6: return iequals(name, "expect");
    case 7: return iequals(name, "upgrade");
    case 10: return iequals(name, "connection") || iequals(name, "keep-alive");
    case 14: return iequals(name, "content-length");
    case 16: return iequals(name, "proxy-connection");
    case 17: return iequals(name, "transfer-encoding");
    default: return false;
  }
}

bool forwardable_trailer(std::string_view name) {
  static constexpr std::string_view kDenied[] = {
      "content-length", "transfer-encoding", "trailer", "host", "connection", "keep-alive",
      "proxy-connection", "te", "upgrade", "authorization", "proxy-authorization",
      "www-authenticate", "proxy-authenticate", "cookie", "set-cookie", "content-type",
      "content-encoding", "content-range", "content-location", "range", "expect",
      "max-forwards", "cache-control", "expires", "age", "pragma", "location", "retry-after",
      "vary", "date"};
  for (std::string_view d : kDenied) {
    if (iequals(name, d)) return false;
  }
  return name.size() < 3 || !iequals(name.substr(0, 3), "if-");
}

}  // namespace

void copy_forwardable_trailers(const http::HeaderMap& from, http::HeaderMap& to) {
  for (const auto& f : from.fields()) {
    if (forwardable_trailer(f.name)) to.add(f.name, f.value);
  }
}

void strip_hop_by_hop(http::HeaderMap& headers, bool keep_upgrade) {
  std::string_view listed[16];
  size_t nlisted = 0;
  for (const auto& f : headers.fields()) {
    if (iequals(f.name, "connection")) {
      http::for_each_list_element(f.value, [&](std::string_view e) {
        if (nlisted < 16) listed[nlisted++] = e;
      });
    }
  }
  auto& fields = headers.fields();
  size_t w = 0;
  for (size_t r = 0; r < fields.size(); ++r) {
    std::string_view n = fields[r].name;
    // "TE: trailers" says the client takes trailer fields; gRPC requires it end to end, so it
    // is kept (as Envoy does) while any other TE value goes.
    std::string_view v = fields[r].value;
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    const bool te_trailers = n.size() == 2 && iequals(n, "te") && iequals(v, "trailers");
    bool drop = is_hop_by_hop(n) && !(keep_upgrade && iequals(n, "upgrade")) && !te_trailers;
    for (size_t i = 0; i < nlisted && !drop && !te_trailers; ++i) {
      drop = iequals(n, listed[i]) && !(keep_upgrade && iequals(n, "upgrade"));
    }
    if (!drop) fields[w++] = fields[r];
  }
  fields.resize(w);
}

bool is_absolute_form(std::string_view target) {
  return !target.empty() && target.front() != '/' && target != "*";
}

std::string_view query_part(const http::RequestHead& req) {
  size_t q = req.target.find('?');
  return q == std::string_view::npos ? std::string_view() : req.target.substr(q);
}

void set_host(http::HeaderMap& headers, std::string_view host) {
  for (auto& f : headers.fields()) {
    if (iequals(f.name, "host")) {
      f.value = host;
      return;
    }
  }
  headers.add("Host", host);
}

bool is_safe_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE";
}

int status_class(int status) {
  if (status < 100 || status > 599) return 0;
  return status / 100;
}


}  // namespace citadel::proxy
