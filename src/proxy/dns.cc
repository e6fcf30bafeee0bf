#include "proxy/dns.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace citadel::proxy {

namespace {

uint16_t port_of(const Address& a) {
  return ntohs(a.family() == AF_INET ? reinterpret_cast<const sockaddr_in*>(&a.addr)->sin_port
                                     : reinterpret_cast<const sockaddr_in6*>(&a.addr)->sin6_port);
}

bool wanted(int family, DnsFamily policy) {
  switch (policy) {
    case DnsFamily::kV4: return family == AF_INET;
    case DnsFamily::kV6: return family == AF_INET6;
    default: return family == AF_INET || family == AF_INET6;
  }
}

const char* family_name(DnsFamily f) {
  switch (f) {
    case DnsFamily::kV4: return "IPv4";
    case DnsFamily::kV6: return "IPv6";
    default: return "IP";
  }
}

}  // namespace

std::string Address::ip() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buf, sizeof buf);
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

std::string Address::text() const {
  std::string p = std::to_string(port_of(*this));
  return family() == AF_INET6 ? "[" + ip() + "]:" + p : ip() + ":" + p;
}

bool Address::operator==(const Address& o) const {
  return len == o.len && std::memcmp(&addr, &o.addr, len) == 0;
}

bool Address::operator<(const Address& o) const {
  if (len != o.len) return len < o.len;  // IPv4 (shorter) first
  return std::memcmp(&addr, &o.addr, len) < 0;
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

core::Result<std::vector<Address>> lookup_blocking(const HostPort& hp, DnsFamily family) {
  const bool literal = is_ip_literal(hp.host);
  if (literal) family = DnsFamily::kAll;  // the family policy applies to names only
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = family == DnsFamily::kV4 ? AF_INET : family == DnsFamily::kV6 ? AF_INET6
                                                                                   : AF_UNSPEC;
  hints.ai_flags = AI_NUMERICSERV | (literal ? AI_NUMERICHOST : 0);
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return core::Status::error("cannot resolve " + hp.text() + ": " + gai_strerror(rc));
  }
  std::vector<Address> v4, v6;
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (!wanted(a->ai_family, family) || a->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address addr;
    std::memcpy(&addr.addr, a->ai_addr, a->ai_addrlen);
    addr.len = a->ai_addrlen;
    (a->ai_family == AF_INET ? v4 : v6).push_back(addr);
  }
  freeaddrinfo(res);
  std::vector<Address> out;
  if (family == DnsFamily::kV4Preferred) {
    out = v4.empty() ? v6 : v4;
  } else {
    out = v4;
    out.insert(out.end(), v6.begin(), v6.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty()) {
    return core::Status::error("cannot resolve " + hp.text() + ": no " + family_name(family) +
                               " address");
  }
  return out;
}

std::vector<std::pair<HostPort, DnsFamily>> dns_names(const std::vector<ClusterConfig>& clusters) {
  std::vector<std::pair<HostPort, DnsFamily>> out;
  for (const auto& c : clusters) {
    for (const auto& e : c.endpoints) {
      if (!is_ip_literal(e.address.host)) out.emplace_back(e.address, c.dns_family);
    }
  }
  return out;
}

LookupTable lookup_all(const std::vector<std::pair<HostPort, DnsFamily>>& names) {
  LookupTable table;
  for (const auto& [hp, family] : names) {
    LookupKey key{hp.text(), family};
    if (table.count(key) == 0) table.emplace(key, lookup_blocking(hp, family));
  }
  return table;
}

LookupFn table_lookup(const LookupTable& table) {
  return [&table](const HostPort& hp, DnsFamily family) -> core::Result<std::vector<Address>> {
    if (is_ip_literal(hp.host)) return lookup_blocking(hp, family);  // no DNS involved
    auto it = table.find(LookupKey{hp.text(), family});
    if (it == table.end()) return core::Status::error("no answer for " + hp.text());
    return it->second;
  };
}

}  // namespace citadel::proxy
