// Endpoint address lookup.
//
// An endpoint given as an IP literal is one address. One given as a DNS name becomes one endpoint
// per address the name resolves to (filtered by the cluster's `dns_family`), sorted so that a
// server rotating its answers does not look like a change. Lookups block (getaddrinfo): at start-up
// and reload they run on the control thread, the periodic refresh runs them on a helper thread
// and hands the answers over as a table (see cli::Server).
#pragma once

#include <sys/socket.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "proxy/config.h"

namespace citadel::proxy {

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family() const { return addr.ss_family; }
  std::string ip() const;    // "10.0.0.5", "::1"
  std::string text() const;  // "10.0.0.5:80", "[::1]:80"
  bool operator==(const Address& o) const;
  bool operator<(const Address& o) const;
};

bool is_ip_literal(const std::string& host);

// The addresses of `hp`. Fails when the name does not resolve or leaves no address of `family`.
using LookupFn =
    std::function<core::Result<std::vector<Address>>(const HostPort& hp, DnsFamily family)>;

// getaddrinfo; IP literals are converted without a lookup.
core::Result<std::vector<Address>> lookup_blocking(const HostPort& hp, DnsFamily family);

// Answers collected ahead of time (by lookup_all on another thread); a name missing from the
// table is an error rather than a blocking lookup.
struct LookupKey {
  std::string host_port;
  DnsFamily family;
  bool operator<(const LookupKey& o) const {
    return host_port != o.host_port ? host_port < o.host_port : family < o.family;
  }
};
using LookupTable = std::map<LookupKey, core::Result<std::vector<Address>>>;

// The DNS names (not IP literals) of every endpoint of `clusters`.
std::vector<std::pair<HostPort, DnsFamily>> dns_names(const std::vector<ClusterConfig>& clusters);
LookupTable lookup_all(const std::vector<std::pair<HostPort, DnsFamily>>& names);
LookupFn table_lookup(const LookupTable& table);

}  // namespace citadel::proxy
