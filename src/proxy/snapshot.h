// A complete, immutable runtime configuration: routes, clusters, filter factories, listener
// settings. Compiled on the control thread, published to every worker; a request keeps the
// snapshot it started with until it ends (see Worker).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "http/http1/server_connection.h"
#include "http/path.h"
#include "observe/metrics.h"
#include "proxy/cluster.h"
#include "proxy/config.h"
#include "proxy/extension_registry.h"
#include "proxy/router.h"

namespace citadel::proxy {

struct ListenerRuntime {
  std::string name;
  uint32_t id = 0;  // the name's id for the process's life (Snapshot::listener_ids)
  HostPort address;
  http::ServerSettings settings;
  http::PathNormalizeOptions path_options;
  uint64_t default_max_body = 0;
  // limits.connections shared out over the workers (rounded up); 0: no limit.
  uint64_t max_connections_per_worker = 0;
  // The listener's filters: every request runs them before it is routed.
  std::vector<const pipeline::FilterFactory*> filters;
  // A TLS listener's context (nullptr: plain).
  std::shared_ptr<const http::TlsServerContext> tls;
  bool http2 = false;  // ALPN h2 (TLS) or h2c with prior knowledge (plain)
};

// What the ACME client (cli/acme_client.h) gives the snapshot: the certificate for each
// `tls.acme` block (issued, read back from the data directory, or a self-signed placeholder
// until the first is issued), by AcmeConfig::key(), in memory; and the answers to the
// challenges in progress.
struct AcmeState {
  std::map<std::string, http::TlsCertificateFiles> certificates;
  std::map<std::string, std::string> http01;  // token -> key authorization
  std::vector<http::TlsChallengeCertificate> tls_alpn01;
};

// What the control thread learned since the config was loaded; a null member is carried from
// the previous snapshot.
struct ControlState {
  // OCSP responses fetched for listener certificates without an `ocsp` file, by file (DER).
  std::shared_ptr<const std::map<std::string, std::string>> ocsp_staples;
  std::shared_ptr<const AcmeState> acme;
};

struct Snapshot {
  uint64_t version = 0;
  std::shared_ptr<const Config> config;
  std::vector<std::unique_ptr<pipeline::FilterFactory>> filter_factories;
  std::map<std::string, std::shared_ptr<Cluster>> clusters;
  RouteTable routes;
  std::vector<ListenerRuntime> listeners;
  bool listeners_with_filters = false;  // some listener has filters (else none is looked up)
  // An id per listener name, kept from snapshot to snapshot (never reused), so that a
  // connection accepted before a reload still names its listener: a connection carries 4 bytes
  // instead of the name. Control thread only.
  std::shared_ptr<std::map<std::string, uint32_t>> listener_ids;
  // Session ticket keys for every TLS listener: made with the first snapshot and handed on to
  // each next one, so tickets open across reloads; the control thread rotates them.
  std::shared_ptr<http::TicketKeys> ticket_keys;
  // OCSP responses fetched for listener certificates without an `ocsp` file, by certificate
  // file (DER), stapled by the TLS contexts of this snapshot. Carried to the next snapshot.
  std::shared_ptr<const std::map<std::string, std::string>> ocsp_staples;
  // The ACME certificates and challenge answers this snapshot serves. Carried to the next.
  std::shared_ptr<const AcmeState> acme;
};

// Compiles `config`. Clusters whose configuration and resolved addresses are unchanged from
// `previous` are reused as they are; a changed cluster is rebuilt and keeps the health state of
// the endpoints it still has. Endpoint names are resolved through `lookup`. Errors name the
// config file and line. A `tls.acme` block without a certificate in the ACME state (only when
// nothing prepared one: `citadel validate`, tests) gets a self-signed placeholder.
core::Result<std::shared_ptr<const Snapshot>> build_snapshot(
    std::shared_ptr<const Config> config, const Snapshot* previous, const ExtensionRegistry& filters,
    observe::Registry& metrics, size_t workers, uint64_t version,
    const LookupFn& lookup = lookup_blocking, ControlState state = {});

}  // namespace citadel::proxy
