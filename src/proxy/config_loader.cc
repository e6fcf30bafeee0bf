// YAML -> Config, with every error reported as file:line: key: what was expected.
#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "core/ascii.h"
#include "core/file_io.h"
#include "http/client/url.h"
#include "http/http1/parser.h"
#include "http/transport/acme_crypto.h"
#include "proxy/config.h"
#include "proxy/route_regex.h"
#include "proxy/router.h"

namespace citadel::proxy {

using core::ConfigNode;

std::optional<HostPort> parse_host_port(const std::string& text) {
  HostPort hp;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    hp.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    hp.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) return std::nullopt;
  }
  if (port.empty() || port.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  hp.port = static_cast<uint16_t>(v);
  return hp;
}

bool addresses_overlap(const HostPort& a, const HostPort& b) {
  if (a.port != b.port || a.port == 0) return false;
  auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
  return a.host == b.host || wildcard(a.host) || wildcard(b.host);
}

namespace {

using http::http1::is_token;

// Text that goes into a request line as (part of) a path: visible ASCII only. A space, CR or LF
// would end the line or add fields (request smuggling from a typo or a templated value);
// other bytes must be percent-encoded, as a client must send them.
bool path_text(const std::string& s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

bool plain_host_chars(const std::string& h);

// A host as a header value or a routing rule: host[:port], a plain name or an IP literal.
bool host_text(const std::string& h) { return valid_authority(h) && plain_host_chars(h); }


int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Why a path written in a route's match can never match what routing sees (normalised paths:
// dot segments resolved, unreserved characters decoded), or "" when it can. A deny rule that
// never matches would let everything through.
std::string unmatchable_path(const std::string& p) {
  if (!path_text(p)) {
    return "control characters, spaces and non-ASCII bytes never appear in a path "
           "(percent-encode them)";
  }
  if (http::has_dot_segment(p)) return "routing resolves dot segments, so this never matches";
  for (size_t i = 0; i + 2 < p.size(); ++i) {
    if (p[i] != '%') continue;
    const int hi = hex_value(p[i + 1]), lo = hex_value(p[i + 2]);
    if (hi < 0 || lo < 0) return "a % must start an escape such as %2F";
    const char c = static_cast<char>(hi * 16 + lo);
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      return std::string("routing decodes ") + p.substr(i, 3) + ", so this never matches: write " +
             c;
    }
  }
  return "";
}

HostPort read_address(const ConfigNode& n, bool allow_port_zero) {
  std::string s = n.str();
  auto hp = parse_host_port(s);
  if (!hp || (!allow_port_zero && hp->port == 0)) {
    n.error("expected an address host:port, got \"" + s + "\"");
    return {};
  }
  return *hp;
}

void read_filters(const ConfigNode& n, const ExtensionValidator& validator,
                  std::vector<FilterEntry>& out) {
  if (!n.defined() || !n.expect_seq()) return;
  for (size_t i = 0; i < n.size(); ++i) {
    ConfigNode f = n.at(i);
    if (!f.expect_map()) continue;
    if (f.size() != 1) {
      f.error("each filter entry names exactly one filter, e.g. `- headers: {...}`");
      continue;
    }
    FilterEntry e;
    e.name = f.keys()[0];
    ConfigNode opts = f[e.name];
    e.options = opts.yaml();
    e.path = opts.path();
    e.line = f.line();
    validator.validate(e, opts);
    out.push_back(std::move(e));
  }
}

// A file named in the config, relative to the config file's directory unless absolute.
std::string config_relative(const std::string& config_file, const std::string& name) {
  if (name.empty() || name[0] == '/') return name;
  size_t slash = config_file.rfind('/');
  return slash == std::string::npos ? name : config_file.substr(0, slash + 1) + name;
}


// A DNS name an ACME server can validate with HTTP-01 or TLS-ALPN-01: letters, digits and
// hyphens in dot-separated labels (no wildcard: that needs DNS-01), at most 253 characters.
bool acme_domain_ok(const std::string& d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  // A last label of digits only is an IP address in disguise ("1.2.3.4", "0x7f.1", "123"):
  // no top-level domain is numeric, and IP identifiers are another ACME type.
  const std::string last = d.substr(d.rfind('.') == std::string::npos ? 0 : d.rfind('.') + 1);
  if (last.find_first_not_of("0123456789") == std::string::npos) return false;
  size_t label = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    char c = d[i];
    if (c == '.') {
      if (label == 0 || d[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || (c == '-' && label == 0) || ++label > 63) return false;
  }
  return d.back() != '-';
}

void read_acme(const ConfigNode& n, const std::string& file, AcmeConfig& a) {
  n.allow_keys({"directory", "email", "domains", "ca", "challenge", "renew_before", "retry"});
  a.line = n.line();
  a.directory = n["directory"].str();
  if (!n["directory"].defined()) {
    n.error("acme needs `directory`: the ACME server's directory URL (https://...), e.g. "
            "https://acme-v02.api.letsencrypt.org/directory");
  } else if (a.directory.rfind("https://", 0) != 0 || a.directory.size() <= 8) {
    n["directory"].error("the directory URL must start with https:// (lowercase): ACME runs "
                         "over https only");
  } else if (auto url = http::client::parse_url(a.directory); !url.ok()) {
    n["directory"].error(url.error().message());
  } else if (!url.value().host_is_ip && !acme_domain_ok(url.value().host) &&
             url.value().host != "localhost") {
    n["directory"].error("expected a host name or an IP address in the URL, got \"" +
                         url.value().host + "\"");
  }
  a.email = n["email"].str();
  if (!a.email.empty() && (a.email.find('@') == std::string::npos ||
                           a.email.find_first_of(" \t\r\n,<>") != std::string::npos)) {
    n["email"].error("expected an email address");
  }
  ConfigNode ds = n["domains"];
  if (!ds.defined() || !ds.is_seq() || ds.size() == 0) {
    (ds.defined() ? ds : n).error("acme needs `domains`: the names the certificate is for");
  } else {
    for (size_t i = 0; i < ds.size(); ++i) {
      std::string d = core::ascii_lower(ds.at(i).str());
      if (d.rfind("*.", 0) == 0) {
        ds.at(i).error("wildcard names need the DNS-01 challenge, which Citadel does not answer");
      } else if (!acme_domain_ok(d)) {
        ds.at(i).error("expected a DNS name such as www.example.com, got \"" + d + "\"");
      } else if (std::find(a.domains.begin(), a.domains.end(), d) != a.domains.end()) {
        ds.at(i).error("\"" + d + "\" is listed twice");
      } else {
        a.domains.push_back(std::move(d));
      }
    }
    if (a.domains.size() > 100) ds.error("an ACME certificate names at most 100 domains");
  }
  a.ca = config_relative(file, n["ca"].str());
  if (!a.ca.empty()) {
    http::TlsClientOptions o;
    o.ca = a.ca;
    auto ctx = http::TlsClientContext::create(o);
    if (!ctx.ok()) n["ca"].error(ctx.error().message());
  }
  const std::string ch = n["challenge"].choice("auto", {"auto", "http-01", "tls-alpn-01"});
  a.challenge = ch == "http-01"       ? AcmeChallenge::kHttp01
                : ch == "tls-alpn-01" ? AcmeChallenge::kTlsAlpn01
                                      : AcmeChallenge::kAuto;
  a.renew_before_s = n["renew_before"].duration_ms(0) / 1000;
  a.retry_ms = n["retry"].nonzero_duration_ms(a.retry_ms);
  if (a.retry_ms > 86'400'000) n["retry"].error("at most 1d (failures back off up to a day)");
}

void read_tls(const ConfigNode& n, const std::string& file, ListenerTlsConfig& t) {
  n.allow_keys({"certificates", "min_version", "client_auth", "session_tickets", "session_cache",
                "hsts", "acme"});
  t.line = n.line();
  ConfigNode acme = n["acme"];
  if (acme.defined() && acme.expect_map()) {
    t.acme.emplace();
    read_acme(acme, file, *t.acme);
  }
  ConfigNode certs = n["certificates"];
  if (!certs.defined()) {
    if (!t.acme) n.error("a TLS listener needs `certificates: [ { cert, key } ]` or `acme`");
  } else if (certs.expect_seq()) {
    if (certs.size() == 0 && !t.acme) certs.error("at least one certificate is needed");
    for (size_t i = 0; i < certs.size(); ++i) {
      ConfigNode c = certs.at(i);
      if (!c.expect_map()) continue;
      c.allow_keys({"cert", "key", "ocsp"});
      http::TlsCertificateFiles f;
      f.cert = config_relative(file, c["cert"].str());
      f.key = config_relative(file, c["key"].str());
      f.ocsp = config_relative(file, c["ocsp"].str());
      if (f.cert.empty()) c.error("a certificate needs `cert` (a PEM file: certificate, chain)");
      if (f.key.empty()) c.error("a certificate needs `key` (a PEM private key)");
      if (f.cert.empty() || f.key.empty()) continue;
      // Load it now, so that `citadel validate` and a reload name the entry that is wrong.
      http::TlsServerOptions one;
      one.certificates.push_back(f);
      one.session_tickets = false;
      auto ctx = http::TlsServerContext::create(one);
      if (!ctx.ok()) c.error(ctx.error().message());
      t.certificates.push_back(std::move(f));
    }
  }
  t.tls13_only = n["min_version"].choice("1.2", {"1.2", "1.3"}) == "1.3";
  ConfigNode ca = n["client_auth"];
  if (ca.defined() && ca.expect_map()) {
    ca.allow_keys({"ca", "mode", "forward_subject"});
    t.client_auth = ca["mode"].choice("required", {"optional", "required"}) == "optional"
                        ? http::ClientAuth::kOptional
                        : http::ClientAuth::kRequired;
    t.client_ca = config_relative(file, ca["ca"].str());
    if (t.client_ca.empty()) {
      ca.error("client_auth needs `ca` (a PEM bundle of the CAs client certificates chain to)");
    } else {
      http::TlsServerOptions check;
      if (t.certificates.empty()) {
        // An ACME listener may have no file of its own: check the CA bundle with any
        // certificate.
        auto key = http::acme::EcKey::generate();
        auto pem = key.ok() ? http::acme::self_signed(key.value(), {"check.invalid"}, 1)
                            : core::Result<std::string>(key.error());
        if (!pem.ok()) {
          ca.error(pem.error().message());
          return;
        }
        http::TlsCertificateFiles f;
        f.cert_pem = pem.value();
        f.key_pem = key.value().private_pem();
        check.certificates.push_back(std::move(f));
      } else {
        check.certificates.push_back(t.certificates.front());
      }
      check.session_tickets = false;
      check.client_auth = t.client_auth;
      check.client_ca = t.client_ca;
      auto ctx = http::TlsServerContext::create(check);
      if (!ctx.ok()) ca["ca"].error(ctx.error().message());
    }
    t.forward_subject = ca["forward_subject"].str();
    if (ca["forward_subject"].defined() && !is_token(t.forward_subject)) {
      ca["forward_subject"].error("expected a header field name");
    }
  }
  t.session_tickets = n["session_tickets"].boolean(true);
  t.session_cache = static_cast<long>(n["session_cache"].integer(20480, 0, 10'000'000));
  ConfigNode h = n["hsts"];
  if (h.defined() && h.expect_map()) {
    h.allow_keys({"max_age", "include_subdomains", "preload"});
    t.hsts_max_age_s = h["max_age"].nonzero_duration_ms(365ull * 86'400'000) / 1000;
    t.hsts_subdomains = h["include_subdomains"].boolean(false);
    t.hsts_preload = h["preload"].boolean(false);
    if (t.hsts_preload && (!t.hsts_subdomains || t.hsts_max_age_s < 31'536'000)) {
      // What the preload list requires (hstspreload.org); a header that asks for preload
      // without it is refused there.
      h["preload"].error("preload needs include_subdomains: true and max_age of at least 365d");
    }
  }
}

void read_listener(const ConfigNode& n, ListenerConfig& l) {
  n.allow_keys({"name", "address", "timeouts", "limits", "merge_slashes", "escaped_slashes",
                "forward_path", "filters", "tls", "redirect_to_https", "http2"});
  l.line = n.line();
  l.name = n["name"].str();
  if (l.name.empty()) n.error("a listener needs a name");
  if (!n["address"].defined()) n.error("a listener needs an address");
  else l.address = read_address(n["address"], true);
  ConfigNode t = n["timeouts"];
  if (t.defined() && t.expect_map()) {
    t.allow_keys({"header", "body_idle", "keepalive", "request"});
    l.timeouts.header_ms = t["header"].duration_ms(l.timeouts.header_ms);
    l.timeouts.body_idle_ms = t["body_idle"].duration_ms(l.timeouts.body_idle_ms);
    l.timeouts.keepalive_ms = t["keepalive"].duration_ms(l.timeouts.keepalive_ms);
    l.timeouts.request_ms = t["request"].duration_ms(l.timeouts.request_ms);
  }
  ConfigNode lim = n["limits"];
  if (lim.defined() && lim.expect_map()) {
    lim.allow_keys({"request_line", "header_count", "header_bytes", "body", "connections"});
    l.limits.request_line = lim["request_line"].size_bytes(l.limits.request_line);
    l.limits.header_count =
        static_cast<uint64_t>(lim["header_count"].integer(100, 1, 10'000));
    l.limits.header_bytes = lim["header_bytes"].size_bytes(l.limits.header_bytes);
    l.limits.body = lim["body"].size_bytes(l.limits.body);
    l.limits.connections =
        static_cast<uint64_t>(lim["connections"].integer(0, 0, 10'000'000));
  }
  l.merge_slashes = n["merge_slashes"].boolean(true);
  const std::string esc =
      n["escaped_slashes"].choice("reject", {"reject", "keep", "decode", "redirect"});
  l.escaped_slashes = esc == "keep"       ? http::EscapedSlashes::kKeep
                      : esc == "decode"   ? http::EscapedSlashes::kDecode
                      : esc == "redirect" ? http::EscapedSlashes::kRedirect
                                          : http::EscapedSlashes::kReject;
  l.forward_normalized =
      n["forward_path"].choice("normalized", {"normalized", "original"}) == "normalized";
  if (l.escaped_slashes == http::EscapedSlashes::kDecode && !l.forward_normalized) {
    // Routing would see "/a/b" while the upstream gets "/a%2Fb": the mismatch this option
    // exists to prevent.
    n["escaped_slashes"].error(
        "decode routes on the decoded path, so it needs forward_path: normalized (use keep or "
        "reject with forward_path: original)");
  }
  ConfigNode tls = n["tls"];
  if (tls.defined() && tls.expect_map()) {
    l.tls.emplace();
    read_tls(tls, n.file(), *l.tls);
  }
  ConfigNode h2 = n["http2"];
  if (h2.defined()) {
    if (h2.is_scalar()) {
      l.http2 = h2.boolean(false);
    } else if (h2.expect_map()) {
      l.http2 = true;
      h2.allow_keys({"max_concurrent_streams", "stream_window", "connection_window"});
      auto& x = l.http2_limits;
      x.max_concurrent_streams = static_cast<uint32_t>(
          h2["max_concurrent_streams"].integer(x.max_concurrent_streams, 1, 10'000));
      // RFC 9113 6.9.2: a window is at most 2^31-1; at least the 64 KiB minus one it starts at.
      uint64_t sw = h2["stream_window"].size_bytes(x.stream_window);
      uint64_t cw = h2["connection_window"].size_bytes(x.connection_window);
      if (sw < 65535 || sw > 0x7fffffff) h2["stream_window"].error("expected 64KiB..2GiB");
      if (cw < 65535 || cw > 0x7fffffff) h2["connection_window"].error("expected 64KiB..2GiB");
      x.stream_window = static_cast<uint32_t>(sw);
      x.connection_window = static_cast<uint32_t>(cw);
    }
  }
  ConfigNode rd = n["redirect_to_https"];
  if (rd.defined()) {
    if (rd.is_scalar() && (rd.str() == "true" || rd.str() == "false")) {
      l.redirect_to_https = rd.boolean(false) ? 443 : 0;
    } else if (rd.expect_map()) {
      rd.allow_keys({"port"});
      l.redirect_to_https = static_cast<uint16_t>(rd["port"].integer(443, 1, 65535));
    }
    if (l.redirect_to_https != 0 && l.tls) {
      rd.error("redirect_to_https belongs on a plain listener (this one is TLS)");
    }
  }
}

// A DNS name as SNI carries it (RFC 6066 3): labels of letters, digits and hyphens, at most
// 63 bytes each and 253 in all, the last not all digits (that would be an IP address).
bool sni_name(const std::string& n) {
  if (n.empty() || n.size() > 253) return false;
  size_t start = 0;
  bool last_numeric = true;
  while (start <= n.size()) {
    size_t dot = n.find('.', start);
    if (dot == std::string::npos) dot = n.size();
    size_t len = dot - start;
    if (len == 0 || len > 63) return false;
    last_numeric = true;
    for (size_t i = start; i < dot; ++i) {
      char c = n[i];
      bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (!alnum && c != '-') return false;
      if (!(c >= '0' && c <= '9')) last_numeric = false;
    }
    start = dot + 1;
  }
  return !last_numeric;
}

// A cluster's `tls:` (true, or a map). The files are loaded now, so that an error names its line;
// their contents join the cluster's fingerprint, so a reload after a file changed builds the
// cluster (and its TLS context) anew.
void read_upstream_tls(const ConfigNode& n, const std::string& file, ClusterConfig& c) {
  UpstreamTlsConfig t;
  t.line = n.line();
  if (n.is_scalar()) {
    if (!n.boolean(false)) return;  // tls: false
  } else if (n.expect_map()) {
    n.allow_keys({"ca", "verify", "sni", "cert", "key", "min_version"});
    t.ca = config_relative(file, n["ca"].str());
    t.verify = n["verify"].boolean(true);
    t.sni = n["sni"].str();
    if (n["sni"].defined() && !sni_name(t.sni)) {
      n["sni"].error("expected a DNS host name (an IP address is never sent as SNI)");
    }
    t.cert = config_relative(file, n["cert"].str());
    t.key = config_relative(file, n["key"].str());
    if (t.cert.empty() != t.key.empty()) n.error("a client certificate needs both `cert` and `key`");
    t.tls13_only = n["min_version"].choice("1.2", {"1.2", "1.3"}) == "1.3";
  } else {
    return;
  }
  auto ctx = http::TlsClientContext::create(upstream_tls_options(t));
  if (!ctx.ok()) n.error(ctx.error().message());
  for (const std::string* f : {&t.ca, &t.cert, &t.key}) {
    if (f->empty()) continue;
    std::string contents;
    core::read_file(*f, contents);  // unreadable: the context above has said so
    c.fingerprint += "\n" + *f + "#" + std::to_string(std::hash<std::string>{}(contents));
  }
  c.tls = std::move(t);
}

void read_cluster(const ConfigNode& n, ClusterConfig& c) {
  n.allow_keys({"name", "lb", "hash", "endpoints", "dns_refresh", "dns_family", "health_check",
                "outlier", "retry", "timeouts", "pool", "limits", "panic_threshold", "tls",
                "protocol"});
  c.line = n.line();
  c.name = n["name"].str();
  if (c.name.empty()) n.error("a cluster needs a name");
  std::string lb = n["lb"].choice("round_robin",
                                  {"round_robin", "least_request", "weighted", "consistent_hash"});
  c.lb = lb == "least_request" ? LbPolicy::kLeastRequest
         : lb == "weighted"    ? LbPolicy::kWeighted
         : lb == "consistent_hash" ? LbPolicy::kConsistentHash
                                   : LbPolicy::kRoundRobin;
  ConfigNode h = n["hash"];
  if (h.defined()) {
    if (h.is_scalar() && h.str() == "source_ip") {
      c.hash.kind = HashPolicy::kSourceIp;
    } else if (h.expect_map()) {
      h.allow_keys({"header", "cookie", "source_ip"});
      if (h["header"].defined()) {
        c.hash.kind = HashPolicy::kHeader;
        c.hash.name = h["header"].str();
      } else if (h["cookie"].defined()) {
        c.hash.kind = HashPolicy::kCookie;
        c.hash.name = h["cookie"].str();
      } else {
        c.hash.kind = HashPolicy::kSourceIp;
      }
    }
  }
  ConfigNode eps = n["endpoints"];
  if (!eps.defined()) {
    n.error("a cluster needs endpoints");
  } else if (eps.expect_seq()) {
    for (size_t i = 0; i < eps.size(); ++i) {
      ConfigNode e = eps.at(i);
      EndpointConfig ec;
      if (e.is_scalar()) {
        ec.address = read_address(e, false);
      } else if (e.expect_map()) {
        e.allow_keys({"address", "weight"});
        ec.address = read_address(e["address"], false);
        ec.weight = static_cast<uint32_t>(e["weight"].integer(1, 1, 1000));
      }
      c.endpoints.push_back(ec);
    }
    if (c.endpoints.empty()) eps.error("a cluster needs at least one endpoint");
  }
  c.dns_refresh_ms = n["dns_refresh"].nonzero_duration_ms(c.dns_refresh_ms);
  std::string family = n["dns_family"].choice("v4_preferred", {"v4_preferred", "v4", "v6", "all"});
  c.dns_family = family == "v4"    ? DnsFamily::kV4
                 : family == "v6"  ? DnsFamily::kV6
                 : family == "all" ? DnsFamily::kAll
                                   : DnsFamily::kV4Preferred;
  ConfigNode hc = n["health_check"];
  if (hc.defined() && hc.expect_map()) {
    hc.allow_keys({"path", "host", "interval", "timeout", "healthy", "unhealthy",
                   "expected_statuses", "grpc"});
    c.health.enabled = true;
    ConfigNode g = hc["grpc"];
    if (g.defined()) {
      // true, or { service: NAME } (the empty name asks about the server as a whole).
      if (g.is_scalar()) {
        c.health.grpc = g.boolean(false);
      } else if (g.expect_map()) {
        g.allow_keys({"service"});
        c.health.grpc = true;
        c.health.grpc_service = g["service"].str();
        if (c.health.grpc_service.size() > 127 || !path_text(c.health.grpc_service)) {
          g["service"].error("expected a service name (at most 127 printable characters)");
        }
      }
      if (c.health.grpc && n["protocol"].str() != "h2") {
        g.error("gRPC health checks need the cluster's protocol: h2");
      }
    }
    c.health.path = hc["path"].str("/healthz");
    if (c.health.path.empty() || c.health.path[0] != '/') {
      hc["path"].error("expected a path starting with /");
    } else if (!path_text(c.health.path)) {
      hc["path"].error("control characters, spaces and non-ASCII bytes are not allowed here");
    }
    c.health.host = hc["host"].str();
    if (hc["host"].defined() && !host_text(c.health.host)) hc["host"].error("expected host[:port]");
    c.health.interval_ms = hc["interval"].nonzero_duration_ms(c.health.interval_ms);
    c.health.timeout_ms = hc["timeout"].nonzero_duration_ms(c.health.timeout_ms);
    c.health.healthy = static_cast<uint32_t>(hc["healthy"].integer(2, 1, 100));
    c.health.unhealthy = static_cast<uint32_t>(hc["unhealthy"].integer(2, 1, 100));
    ConfigNode ex = hc["expected_statuses"];
    if (ex.defined() && ex.expect_seq()) {
      c.health.expected.clear();
      for (size_t i = 0; i < ex.size(); ++i) {
        std::string s = ex.at(i).str();
        int lo = 0, hi = 0;
        char dash = 0;
        int got = std::sscanf(s.c_str(), "%d%c%d", &lo, &dash, &hi);
        if (got == 1) hi = lo;
        if ((got != 1 && !(got == 3 && dash == '-')) || lo < 100 || hi > 599 || lo > hi) {
          ex.at(i).error("expected a status (200) or a range (200-299)");
          continue;
        }
        c.health.expected.emplace_back(lo, hi);
      }
    }
    if (c.health.timeout_ms > c.health.interval_ms) {
      hc["timeout"].error("the timeout must not exceed the interval");
    }
  }
  ConfigNode o = n["outlier"];
  if (o.defined() && o.expect_map()) {
    o.allow_keys({"consecutive_failures", "base_ejection", "max_ejection", "max_ejection_percent"});
    c.outlier.enabled = true;
    c.outlier.consecutive_failures =
        static_cast<uint32_t>(o["consecutive_failures"].integer(5, 1, 1000));
    c.outlier.base_ejection_ms = o["base_ejection"].nonzero_duration_ms(c.outlier.base_ejection_ms);
    c.outlier.max_ejection_ms = o["max_ejection"].nonzero_duration_ms(c.outlier.max_ejection_ms);
    c.outlier.max_ejection_percent =
        static_cast<uint32_t>(o["max_ejection_percent"].integer(50, 0, 100));
  }
  ConfigNode r = n["retry"];
  if (r.defined() && r.expect_map()) {
    r.allow_keys({"attempts", "on", "budget_percent", "min_concurrency", "backoff_base",
                  "backoff_max"});
    c.retry.attempts = static_cast<uint32_t>(r["attempts"].integer(1, 0, 10));
    ConfigNode on = r["on"];
    if (on.defined() && on.expect_seq()) {
      for (size_t i = 0; i < on.size(); ++i) {
        std::string v = on.at(i).str();
        if (v == "connect_failure") c.retry.on_connect_failure = true;
        else if (v == "reset") c.retry.on_reset = true;
        else if (v.size() == 3 && v[0] >= '1' && v[0] <= '5' && std::isdigit(v[1]) &&
                 std::isdigit(v[2])) c.retry.statuses.push_back(std::stoi(v));
        else on.at(i).error("unknown retry condition \"" + v +
                            "\" (expected connect_failure, reset or a status such as 503)");
      }
    } else if (!on.defined()) {
      c.retry.on_connect_failure = true;
      c.retry.on_reset = true;
    }
    c.retry.budget_percent = static_cast<uint32_t>(r["budget_percent"].integer(20, 0, 100));
    c.retry.min_retry_concurrency =
        static_cast<uint32_t>(r["min_concurrency"].integer(3, 0, 10'000));
    c.retry.backoff_base_ms = r["backoff_base"].duration_ms(c.retry.backoff_base_ms);
    c.retry.backoff_max_ms = r["backoff_max"].duration_ms(c.retry.backoff_max_ms);
  }
  ConfigNode t = n["timeouts"];
  if (t.defined() && t.expect_map()) {
    t.allow_keys({"connect", "response", "idle"});
    c.timeouts.connect_ms = t["connect"].duration_ms(c.timeouts.connect_ms);
    c.timeouts.response_ms = t["response"].duration_ms(c.timeouts.response_ms);
    c.timeouts.idle_ms = t["idle"].duration_ms(c.timeouts.idle_ms);
  }
  ConfigNode lim = n["limits"];
  if (lim.defined() && lim.expect_map()) {
    lim.allow_keys({"max_connections", "max_pending", "max_requests"});
    c.limits.max_connections =
        static_cast<uint32_t>(lim["max_connections"].integer(c.limits.max_connections, 1, 1'000'000));
    c.limits.max_pending =
        static_cast<uint32_t>(lim["max_pending"].integer(c.limits.max_pending, 0, 1'000'000));
    c.limits.max_requests =
        static_cast<uint32_t>(lim["max_requests"].integer(c.limits.max_requests, 1, 1'000'000));
  }
  ConfigNode p = n["pool"];
  if (p.defined() && p.expect_map()) {
    p.allow_keys({"max_idle", "idle_timeout"});
    c.pool.max_idle = static_cast<uint32_t>(p["max_idle"].integer(128, 0, 100'000));
    c.pool.idle_timeout_ms = p["idle_timeout"].duration_ms(c.pool.idle_timeout_ms);
  }
  c.panic_threshold_percent = static_cast<uint32_t>(n["panic_threshold"].integer(50, 0, 100));
  c.fingerprint = YAML::Dump(n.yaml());
  c.h2 = n["protocol"].choice("http1", {"http1", "h2"}) == "h2";
  if (n["tls"].defined()) read_upstream_tls(n["tls"], n.file(), c);
}

// Two sockets on one address would split its connections between them (the workers' sockets
// share a port through SO_REUSEPORT, so the kernel does not refuse the second): every listener
// and the admin listener need an address of their own. Reports the later one of each pair, at
// its line. Reads the nodes again so that it depends on nothing else the loader parses.
void check_distinct_addresses(const ConfigNode& listeners, const ConfigNode& admin) {
  struct Bound {
    HostPort address;
    ConfigNode node;
    std::string what;
  };
  std::vector<Bound> all;
  auto collect = [&all](const ConfigNode& addr, std::string what) {
    if (!addr.defined() || !addr.is_scalar()) return;  // an absent node throws on is_scalar()
    auto hp = parse_host_port(addr.yaml().Scalar());
    if (hp && hp->port != 0) all.push_back({*hp, addr, std::move(what)});  // 0: a free port
  };
  if (listeners.defined() && listeners.is_seq()) {
    for (size_t i = 0; i < listeners.size(); ++i) {
      ConfigNode ln = listeners.at(i);
      if (!ln.defined() || !ln.is_map()) continue;
      ConfigNode name = ln["name"];
      bool named = name.defined() && name.is_scalar();
      collect(ln["address"], "listener \"" + (named ? name.yaml().Scalar() : std::string()) + "\"");
    }
  }
  if (admin.defined() && admin.is_map()) collect(admin["address"], "the admin listener");
  // Sorts indices: assigning a YAML::Node (inside ConfigNode) rewrites the node it refers to.
  std::vector<size_t> order(all.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&all](size_t a, size_t b) { return all[a].node.line() < all[b].node.line(); });
  for (size_t j = 0; j < order.size(); ++j) {
    const Bound& later = all[order[j]];
    for (size_t i = 0; i < j; ++i) {
      const Bound& earlier = all[order[i]];
      if (!addresses_overlap(earlier.address, later.address)) continue;
      later.node.error(later.address.text() + " overlaps the address of " + earlier.what +
                       " (line " + std::to_string(earlier.node.line()) +
                       "); each listener needs an address of its own");
      break;
    }
  }
}

// A host as written in the config: letters, digits, "-._~", a port, or a bracketed IP literal
// (no "/", "?" or "#" that would turn a Location's host into a path or a query).
bool plain_host_chars(const std::string& h) {
  if (!h.empty() && h.front() == '[') return true;  // valid_authority checks the literal
  for (char c : h) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// RFC 9110 token characters, lower case (an Upgrade protocol name is a token).
constexpr const char* kTokenChars = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~";

// Compiles a route pattern the way build_snapshot will, so that a pattern RE2 refuses
// (a backreference, lookaround, an unbalanced group) fails the load with its line.
std::unique_ptr<re2::RE2> valid_regex(const ConfigNode& n, const std::string& pattern) {
  auto re = compile_route_regex(pattern);
  if (re.ok()) return std::move(re.value());
  n.error("invalid regular expression: " + re.error().message() +
          " (RE2 syntax: no backreferences, no lookaround)");
  return nullptr;
}

void read_route(const ConfigNode& n, const ExtensionValidator& fv,
                const std::set<std::string>& clusters, RouteConfig& r) {
  n.allow_keys({"name", "match", "filters", "rewrite", "to", "max_body", "buffer_limit", "timeout", "upgrades"});
  r.line = n.line();
  r.name = n["name"].str();
  ConfigNode m = n["match"];
  if (m.defined() && m.expect_map()) {
    m.allow_keys({"host", "path", "path_prefix", "path_regex", "methods", "headers"});
    r.match.hosts = m["host"].str_list();
    for (const auto& h : r.match.hosts) {
      const std::string bare = h.rfind("*.", 0) == 0 ? h.substr(2) : h;
      if (bare.empty() || bare.find('*') != std::string::npos || !host_text(bare)) {
        m["host"].error("expected an exact host or a wildcard such as *.example.com, got \"" + h +
                        "\"");
      }
    }
    int kinds = 0;
    if (m["path"].defined()) {
      r.match.path_kind = RouteMatchConfig::kExact;
      r.match.path = m["path"].str();
      ++kinds;
    }
    if (m["path_prefix"].defined()) {
      r.match.path_kind = RouteMatchConfig::kPrefix;
      r.match.path = m["path_prefix"].str();
      ++kinds;
    }
    if (m["path_regex"].defined()) {
      r.match.path_kind = RouteMatchConfig::kRegex;
      r.match.path = m["path_regex"].str();
      valid_regex(m["path_regex"], r.match.path);
      ++kinds;
    }
    if (kinds > 1) m.error("use only one of path, path_prefix, path_regex");
    if ((r.match.path_kind == RouteMatchConfig::kExact ||
         r.match.path_kind == RouteMatchConfig::kPrefix) &&
        (r.match.path.empty() || r.match.path[0] != '/')) {
      m.error("paths start with /");
    } else if (r.match.path_kind == RouteMatchConfig::kExact ||
               r.match.path_kind == RouteMatchConfig::kPrefix) {
      const std::string why = unmatchable_path(r.match.path);
      if (!why.empty()) m[m["path"].defined() ? "path" : "path_prefix"].error(why);
    }
    r.match.methods = m["methods"].str_list();
    for (const auto& method : r.match.methods) {
      std::string upper = method;
      for (char& c : upper) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
      if (!is_token(method)) {
        m["methods"].error("\"" + method + "\" is not a method name");
      } else if (upper != method) {
        // Methods are case-sensitive (RFC 9110 section 9.1): "delete" never matches DELETE.
        m["methods"].error("methods are case-sensitive: \"" + method + "\" never matches " + upper);
      }
    }
    ConfigNode hs = m["headers"];
    if (hs.defined() && hs.expect_seq()) {
      for (size_t i = 0; i < hs.size(); ++i) {
        ConfigNode h = hs.at(i);
        if (!h.expect_map()) continue;
        h.allow_keys({"name", "exact", "regex", "present", "absent"});
        HeaderMatch hm;
        hm.name = h["name"].str();
        if (hm.name.empty()) h.error("a header match needs a name");
        else if (!is_token(hm.name)) h["name"].error("expected a header field name");
        if (h["exact"].defined()) {
          hm.kind = HeaderMatch::kExact;
          hm.value = h["exact"].str();
        } else if (h["regex"].defined()) {
          hm.kind = HeaderMatch::kRegex;
          hm.value = h["regex"].str();
          valid_regex(h["regex"], hm.value);
        } else if (h["absent"].boolean(false)) {
          hm.kind = HeaderMatch::kAbsent;
        } else {
          hm.kind = HeaderMatch::kPresent;
        }
        r.match.headers.push_back(hm);
      }
    }
  }
  read_filters(n["filters"], fv, r.filters);
  ConfigNode rw = n["rewrite"];
  if (rw.defined() && rw.expect_map()) {
    rw.allow_keys({"strip_prefix", "replace_prefix", "regex", "host"});
    // Rewritten paths go into the upstream's request line.
    auto check_path = [](const ConfigNode& node, const std::string& v) {
      if (v.empty() || v[0] != '/') node.error("a path starts with /");
      else if (!path_text(v)) node.error("control characters, spaces and non-ASCII bytes are not "
                                         "allowed in a path (percent-encode them)");
      else if (http::has_dot_segment(v)) node.error("a dot segment would reach the upstream");
    };
    if (rw["strip_prefix"].defined()) {
      r.rewrite.strip_prefix = rw["strip_prefix"].str();
      check_path(rw["strip_prefix"], *r.rewrite.strip_prefix);
    }
    ConfigNode rp = rw["replace_prefix"];
    if (rp.defined() && rp.expect_map()) {
      rp.allow_keys({"from", "to"});
      r.rewrite.replace_prefix = std::make_pair(rp["from"].str(), rp["to"].str());
      check_path(rp["from"], r.rewrite.replace_prefix->first);
      check_path(rp["to"], r.rewrite.replace_prefix->second);
    }
    ConfigNode rr = rw["regex"];
    if (rr.defined() && rr.expect_map()) {
      rr.allow_keys({"pattern", "substitution"});
      r.rewrite.regex = std::make_pair(rr["pattern"].str(), rr["substitution"].str());
      if (!path_text(r.rewrite.regex->second)) {
        rr["substitution"].error("control characters, spaces and non-ASCII bytes are not allowed "
                                 "in a path (percent-encode them)");
      }
      auto re = valid_regex(rr["pattern"], r.rewrite.regex->first);
      // `$1` as users write it becomes RE2's `\1` here, once, not per request.
      auto rewrite = to_re2_rewrite(r.rewrite.regex->second);
      std::string why;
      if (!rewrite.ok()) {
        rr["substitution"].error(rewrite.error().message());
      } else if (re != nullptr && !re->CheckRewriteString(rewrite.value(), &why)) {
        rr["substitution"].error("names a group the pattern does not have (it has " +
                                 std::to_string(re->NumberOfCapturingGroups()) + ")");
      } else {
        r.rewrite.re2_substitution = std::move(rewrite.value());
      }
    }
    if (rw["host"].defined()) {
      r.rewrite.host = rw["host"].str();
      if (!host_text(*r.rewrite.host)) rw["host"].error("expected host[:port]");
    }
    int n_rw = (r.rewrite.strip_prefix ? 1 : 0) + (r.rewrite.replace_prefix ? 1 : 0) +
               (r.rewrite.regex ? 1 : 0);
    if (n_rw > 1) rw.error("use only one of strip_prefix, replace_prefix, regex");
  }
  ConfigNode to = n["to"];
  if (!to.defined()) {
    n.error("a route needs a target `to:` (cluster, respond or redirect)");
  } else if (to.expect_map()) {
    to.allow_keys({"cluster", "respond", "redirect", "service", "static"});
    int targets = 0;
    if (to["cluster"].defined()) {
      ++targets;
      r.target = RouteConfig::kCluster;
      r.cluster = to["cluster"].str();
      if (!clusters.count(r.cluster)) {
        to["cluster"].error("no cluster named \"" + r.cluster + "\"");
      }
    }
    if (to["respond"].defined()) {
      ++targets;
      r.target = RouteConfig::kRespond;
      ConfigNode rs = to["respond"];
      if (rs.expect_map()) {
        rs.allow_keys({"status", "body", "content_type"});
        r.respond.status = static_cast<int>(rs["status"].integer(200, 200, 599));
        r.respond.body = rs["body"].str();
        r.respond.content_type = rs["content_type"].str("text/plain");
        if (!http::safe_field_value(r.respond.content_type)) {
          rs["content_type"].error("control characters are not allowed in a header value");
        }
        if ((r.respond.status == 204 || r.respond.status == 304) && !r.respond.body.empty()) {
          // Such a response has no body on the wire: a client would read one as the next
          // response.
          rs["body"].error("a " + std::to_string(r.respond.status) + " response has no body");
        }
      }
    }
    if (to["redirect"].defined()) {
      ++targets;
      r.target = RouteConfig::kRedirect;
      ConfigNode rd = to["redirect"];
      if (rd.expect_map()) {
        rd.allow_keys({"status", "url", "scheme", "host", "path", "keep_query"});
        r.redirect.status = static_cast<int>(rd["status"].integer(302, 300, 399));
        r.redirect.url = rd["url"].str();
        r.redirect.scheme = rd["scheme"].choice("", {"http", "https"});
        r.redirect.host = rd["host"].str();
        r.redirect.path = rd["path"].str();
        r.redirect.keep_query = rd["keep_query"].boolean(true);
        // These go into Location: no control characters (a CR LF would add header fields), a
        // host that is a host, a path that is a path.
        for (const char* key : {"url", "host", "path"}) {
          // Visible ASCII only: a raw UTF-8 byte would reach the client as it is (browsers read
          // Location as Latin-1 and mangle it); percent-encode it.
          if (!path_text(rd[key].str())) {
            rd[key].error("control characters, spaces and non-ASCII bytes are not allowed here "
                          "(percent-encode them)");
          }
        }
        if (!r.redirect.host.empty() &&
            !host_text(r.redirect.host)) {
          rd["host"].error("expected host[:port]");
        }
        if (!r.redirect.path.empty() && r.redirect.path.front() != '/') {
          rd["path"].error("a path starts with /");
        }
      }
    }
    if (to["service"].defined()) {
      ++targets;
      r.target = RouteConfig::kService;
      r.service = to["service"].str();
      if (!fv.has_service(r.service)) {
        const std::string known = fv.service_names();
        to["service"].error("unknown service \"" + r.service + "\" (" +
                            (known.empty() ? std::string("this build has none")
                                           : "expected " + known) +
                            ")");
      }
    }
    if (to["static"].defined()) {
      ++targets;
      to.error("static targets are not available in this version");
    }
    if (targets != 1) {
      to.error("a route's `to:` names exactly one of cluster, respond, redirect, service");
    }
  }
  if (n["max_body"].defined()) r.max_body = n["max_body"].size_bytes(0);
  if (n["buffer_limit"].defined()) r.buffer_limit = n["buffer_limit"].size_bytes(r.buffer_limit);
  if (n["timeout"].defined()) r.timeout_ms = n["timeout"].duration_ms(0);
  ConfigNode up = n["upgrades"];
  if (up.defined() && up.expect_seq()) {
    for (size_t i = 0; i < up.size(); ++i) {
      std::string p = up.at(i).str();
      for (char& c : p) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
      if (p == "h2c") {
        // A tunnel past the routes: the upstream would take any later request on it as HTTP/2
        // that no route, filter or limit of Citadel ever sees (h2c smuggling).
        up.at(i).error(
            "h2c upgrades are never forwarded: the tunnel would carry requests past "
            "every route and filter");
      } else if (p.empty() || p.find_first_not_of(kTokenChars) != std::string::npos) {
        up.at(i).error("expected an Upgrade protocol name such as websocket");
      } else {
        r.upgrades.push_back(std::move(p));
      }
    }
  }
}

}  // namespace

std::unique_ptr<Config> load_config(const std::string& file, const ExtensionValidator& filters,
                                    core::ConfigErrors& errors) {
  auto yaml = core::load_yaml_file(file, errors);
  if (!yaml) return nullptr;
  auto cfg = std::make_unique<Config>();
  cfg->file = file;
  cfg->raw = *yaml;
  ConfigNode root(*yaml, "", &cfg->file, &errors);
  if (!root.is_map()) {
    errors.add(file + ":1: the config must be a mapping of top-level keys", 1);
    return nullptr;
  }
  root.allow_keys({"workers", "listeners", "admin", "clusters", "routes", "access_log",
                   "error_log", "drain_timeout", "services", "store"});

  ConfigNode st = root["store"];
  std::string data_dir = "data";
  if (st.defined() && st.expect_map()) {
    st.allow_keys({"data_dir"});
    data_dir = st["data_dir"].str(data_dir);
    if (data_dir.empty()) st["data_dir"].error("expected a directory");
  }
  cfg->data_dir = config_relative(file, data_dir);

  // Services' options, validated by the service itself; a service a route names without an
  // entry here runs with its defaults.
  ConfigNode sv = root["services"];
  if (sv.defined() && sv.expect_map()) {
    for (const auto& name : sv.keys()) {
      ConfigNode opts = sv[name];
      if (!filters.has_service(name)) {
        const std::string known = filters.service_names();
        opts.error("unknown service \"" + name + "\" (" +
                   (known.empty() ? std::string("this build has none") : "expected " + known) +
                   ")");
        continue;
      }
      FilterEntry e;
      e.name = name;
      e.options = opts.yaml();
      e.path = opts.path();
      e.line = opts.line();
      filters.validate_service(name, opts);
      cfg->services[name] = std::move(e);
    }
  }

  ConfigNode w = root["workers"];
  if (w.defined() && !(w.is_scalar() && w.str() == "auto")) {
    cfg->workers = static_cast<uint32_t>(w.integer(0, 1, 256));
  }
  if (cfg->workers == 0) {
    cfg->workers = std::max(1u, std::thread::hardware_concurrency());
  }

  ConfigNode ls = root["listeners"];
  if (!ls.defined()) {
    root.error("at least one listener is needed under `listeners:`");
  } else if (ls.expect_seq()) {
    std::set<std::string> names;
    for (size_t i = 0; i < ls.size(); ++i) {
      ListenerConfig l;
      ConfigNode ln = ls.at(i);
      if (!ln.expect_map()) continue;
      read_listener(ln, l);
      read_filters(ln["filters"], filters, l.filters);
      if (!names.insert(l.name).second) ln["name"].error("duplicate listener name \"" + l.name + "\"");
      cfg->listeners.push_back(std::move(l));
    }
  }
  {
    // Listeners whose ACME certificates have the same first name share one certificate (an IPv4
    // and an IPv6 listener): they must ask for the same one. Two certificates may not name one
    // domain (their challenge answers would be each other's), and HTTP-01 needs a plain
    // listener for the validation to reach.
    std::map<std::string, const AcmeConfig*> by_first;
    std::map<std::string, const AcmeConfig*> by_domain;
    bool plain = false;
    for (const auto& l : cfg->listeners) plain = plain || !l.tls;
    for (size_t i = 0; i < cfg->listeners.size(); ++i) {
      const auto& l = cfg->listeners[i];
      if (!l.tls || !l.tls->acme || l.tls->acme->domains.empty()) continue;
      const AcmeConfig& a = *l.tls->acme;
      const std::string where = file + ":" + std::to_string(a.line) + ": listeners[" +
                                std::to_string(i) + "].tls.acme: ";
      if (a.challenge == AcmeChallenge::kHttp01 && !plain) {
        errors.add(where + "challenge http-01 needs a plain (non-TLS) listener, on port 80 for "
                           "public CAs, for the validation to reach",
                   a.line);
      }
      auto [it, fresh] = by_first.emplace(a.domains.front(), &a);
      if (!fresh) {
        if (!(*it->second == a)) {
          errors.add(where + "another listener's acme block also starts with \"" +
                         a.domains.front() + "\" (line " + std::to_string(it->second->line) +
                         ") but differs; they share one certificate, so ask for the same",
                     a.line);
        }
        continue;
      }
      for (const auto& d : a.domains) {
        auto [other, first_time] = by_domain.emplace(d, &a);
        if (!first_time) {
          errors.add(where + "\"" + d + "\" is also in the acme block at line " +
                         std::to_string(other->second->line) +
                         "; a domain belongs to one certificate",
                     a.line);
        }
      }
    }
  }
  ConfigNode admin = root["admin"];
  if (admin.defined() && admin.expect_map()) {
    admin.allow_keys({"address"});
    cfg->admin = read_address(admin["address"], true);
    cfg->admin_line = admin["address"].line();
  }
  check_distinct_addresses(ls, admin);
  std::set<std::string> cluster_names;
  ConfigNode cs = root["clusters"];
  if (cs.defined() && cs.expect_seq()) {
    for (size_t i = 0; i < cs.size(); ++i) {
      ClusterConfig c;
      ConfigNode cn = cs.at(i);
      if (!cn.expect_map()) continue;
      read_cluster(cn, c);
      if (!cluster_names.insert(c.name).second) {
        cn["name"].error("duplicate cluster name \"" + c.name + "\"");
      }
      cfg->clusters.push_back(std::move(c));
    }
  }
  ConfigNode rs = root["routes"];
  if (!rs.defined()) {
    root.error("at least one route is needed under `routes:`");
  } else if (rs.expect_seq()) {
    for (size_t i = 0; i < rs.size(); ++i) {
      RouteConfig r;
      ConfigNode rn = rs.at(i);
      if (!rn.expect_map()) continue;
      read_route(rn, filters, cluster_names, r);
      // A stream runs at most 32 filters: more would be silently skipped, a WAF or an auth
      // filter at the end included.
      size_t most = 0;  // the listener with the most filters
      for (const auto& l : cfg->listeners) most = std::max(most, l.filters.size());
      const size_t nfilters = most + r.filters.size();
      if (nfilters > 32) {
        ConfigNode fn = rn["filters"];
        (fn.defined() ? fn : rn)
            .error("a route runs at most 32 filters, its listener's included (this one: " +
                   std::to_string(nfilters) + ")");
      }
      if (r.name.empty()) r.name = "route" + std::to_string(i);
      cfg->routes.push_back(std::move(r));
    }
  }
  ConfigNode al = root["access_log"];
  if (al.defined()) {
    if (al.is_scalar() && (al.str() == "off" || al.str() == "false")) {
      cfg->access_log.enabled = false;
    } else if (al.expect_map()) {
      al.allow_keys({"path", "enabled"});
      cfg->access_log.enabled = al["enabled"].boolean(true);
      cfg->access_log.path = al["path"].str("-");
    }
  }
  ConfigNode el = root["error_log"];
  if (el.defined() && el.expect_map()) {
    el.allow_keys({"level"});
    cfg->error_log_level = el["level"].choice("info", {"debug", "info", "warn", "error"});
  }
  cfg->drain_timeout_ms = root["drain_timeout"].duration_ms(cfg->drain_timeout_ms);
  if (!errors.empty()) return nullptr;
  return cfg;
}

}  // namespace citadel::proxy
