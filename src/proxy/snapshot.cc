#include "proxy/snapshot.h"

#include "core/ascii.h"

#include <algorithm>

#include "http/transport/acme_crypto.h"
#include "proxy/cluster_handler.h"
#include "proxy/listener_policy.h"
#include "proxy/route_regex.h"
#include "proxy/targets/redirect.h"
#include "proxy/targets/respond.h"

namespace citadel::proxy {
namespace {

// Compiles one of a route's patterns. The loader has checked them all, so an error here means a
// Config that did not come from load_config; it is reported like a config error, not thrown.
std::unique_ptr<re2::RE2> route_regex(const std::string& pattern, const Config& config,
                                      const RouteConfig& rc, core::ConfigErrors& errors) {
  auto re = compile_route_regex(pattern);
  if (re.ok()) return std::move(re.value());
  errors.add(config.file + ":" + std::to_string(rc.line) + ": routes: \"" + rc.name +
                 "\": invalid regular expression: " + re.error().message(),
             rc.line);
  return nullptr;
}

}  // namespace

core::Result<std::shared_ptr<const Snapshot>> build_snapshot(
    std::shared_ptr<const Config> config, const Snapshot* previous, const ExtensionRegistry& filters,
    observe::Registry& metrics, size_t workers, uint64_t version, const LookupFn& lookup,
    ControlState state) {
  auto snap = std::make_shared<Snapshot>();
  snap->version = version;
  snap->ocsp_staples = state.ocsp_staples ? std::move(state.ocsp_staples)
                       : previous != nullptr ? previous->ocsp_staples
                                             : nullptr;
  snap->acme = state.acme ? std::move(state.acme)
               : previous != nullptr ? previous->acme
                                     : nullptr;
  snap->listener_ids = previous != nullptr && previous->listener_ids
                           ? previous->listener_ids
                           : std::make_shared<std::map<std::string, uint32_t>>();
  snap->ticket_keys = previous != nullptr && previous->ticket_keys
                          ? previous->ticket_keys
                          : std::make_shared<http::TicketKeys>();
  snap->config = config;
  core::ConfigErrors errors;

  for (const auto& cc : config->clusters) {
    std::shared_ptr<Cluster> cluster;
    const Cluster* replaced = nullptr;
    if (previous != nullptr) {
      auto it = previous->clusters.find(cc.name);
      if (it != previous->clusters.end()) {
        replaced = it->second.get();
        if (replaced->config().fingerprint == cc.fingerprint &&
            replaced->addresses_match(cc, lookup)) {
          cluster = it->second;
        }
      }
    }
    if (!cluster) {
      auto created = Cluster::create(cc, workers, metrics, lookup, replaced);
      if (!created.ok()) {
        return core::Status::error(config->file + ":" + std::to_string(cc.line) + ": " +
                                   created.error().message());
      }
      cluster = created.value();
    }
    snap->clusters[cc.name] = cluster;
  }

  // Fields that carry a verified client subject somewhere: every listener removes them from
  // requests (a listener without client_auth would otherwise pass a forged one to routes and
  // targets that trust it).
  std::vector<std::string> subject_fields;
  for (const auto& l : config->listeners) {
    if (!l.tls || l.tls->forward_subject.empty()) continue;
    bool seen = false;
    for (const auto& f : subject_fields) seen = seen || http::iequals(f, l.tls->forward_subject);
    if (!seen) subject_fields.push_back(l.tls->forward_subject);
  }

  for (const auto& l : config->listeners) {
    ListenerRuntime lr;
    lr.name = l.name;
    auto [id, fresh] = snap->listener_ids->emplace(l.name, snap->listener_ids->size() + 1);
    (void)fresh;
    lr.id = id->second;
    lr.address = l.address;
    lr.settings.limits.max_request_line = l.limits.request_line;
    lr.settings.limits.max_header_count = l.limits.header_count;
    lr.settings.limits.max_head_bytes = l.limits.header_bytes;
    lr.settings.header_timeout_ms = l.timeouts.header_ms;
    lr.settings.body_idle_timeout_ms = l.timeouts.body_idle_ms;
    lr.settings.keepalive_timeout_ms = l.timeouts.keepalive_ms;
    lr.settings.request_timeout_ms = l.timeouts.request_ms;
    lr.settings.http2 = l.http2_limits;
    lr.http2 = l.http2;
    lr.path_options.merge_slashes = l.merge_slashes;
    lr.path_options.escaped_slashes = l.escaped_slashes;
    lr.path_options.forward_normalized = l.forward_normalized;
    lr.default_max_body = l.limits.body;
    lr.max_connections_per_worker =
        workers == 0 ? l.limits.connections : (l.limits.connections + workers - 1) / workers;
    // The listener's own options come first, as filters (listener_policy.h); then its filters.
    auto own = [&](std::unique_ptr<pipeline::FilterFactory> f) {
      lr.filters.push_back(f.get());
      snap->filter_factories.push_back(std::move(f));
    };
    if (!l.tls && snap->acme && !snap->acme->http01.empty()) {
      // HTTP-01 answers come first on plain listeners, before a redirect to https.
      own(std::make_unique<AcmeHttp01FilterFactory>(
          std::shared_ptr<const std::map<std::string, std::string>>(snap->acme,
                                                                     &snap->acme->http01)));
    }
    if (l.tls) {
      const ListenerTlsConfig& t = *l.tls;
      http::TlsServerOptions o;
      if (t.acme) {
        // The ACME certificate is the listener's default; its own certificates follow.
        auto it = snap->acme ? snap->acme->certificates.find(t.acme->key())
                             : std::map<std::string, http::TlsCertificateFiles>::const_iterator();
        if (snap->acme && it != snap->acme->certificates.end()) {
          o.certificates.push_back(it->second);
        } else {
          auto placeholder = http::acme::placeholder_certificate(t.acme->domains);
          if (!placeholder.ok()) {
            return core::Status::error(config->file + ":" + std::to_string(t.acme->line) + ": " +
                                       placeholder.error().message());
          }
          o.certificates.push_back(std::move(placeholder.value()));
        }
        if (snap->acme) {
          for (const auto& ch : snap->acme->tls_alpn01) {
            if (std::find(t.acme->domains.begin(), t.acme->domains.end(), ch.name) !=
                t.acme->domains.end()) {
              o.acme_challenges.push_back(ch);
            }
          }
        }
      }
      o.certificates.insert(o.certificates.end(), t.certificates.begin(), t.certificates.end());
      if (snap->ocsp_staples) {
        for (auto& f : o.certificates) {
          auto it = snap->ocsp_staples->find(f.cert);
          if (f.ocsp.empty() && it != snap->ocsp_staples->end()) f.ocsp_der = it->second;
        }
      }
      o.tls13_only = t.tls13_only;
      // HTTP/2 first where the listener speaks it (RFC 9113, 3.2), else HTTP/1.1 only.
      o.alpn = l.http2 ? std::vector<std::string>{"h2", "http/1.1"}
                       : std::vector<std::string>{"http/1.1"};
      o.client_auth = t.client_auth;
      o.client_ca = t.client_ca;
      o.session_tickets = t.session_tickets;
      o.session_cache = t.session_cache;
      o.ticket_keys = snap->ticket_keys;
      o.session_context = "listener:" + l.name;
      auto ctx = http::TlsServerContext::create(o);
      if (!ctx.ok()) {
        // The files changed since the config was checked (a reload, a rotation in progress).
        return core::Status::error(config->file + ":" + std::to_string(t.line) + ": listeners: \"" +
                                   l.name + "\": " + ctx.error().message());
      }
      lr.tls = ctx.value();
      if (t.hsts_max_age_s > 0) {
        std::string hsts = "max-age=" + std::to_string(t.hsts_max_age_s);
        if (t.hsts_subdomains) hsts += "; includeSubDomains";
        if (t.hsts_preload) hsts += "; preload";
        own(std::make_unique<HstsFilterFactory>(std::move(hsts)));
      }
    }
    for (const auto& field : subject_fields) {
      // Removes the field everywhere; sets it only where this listener forwards its subject.
      const bool mine = l.tls && http::iequals(l.tls->forward_subject, field);
      own(std::make_unique<ClientSubjectFilterFactory>(field, mine));
    }
    if (l.redirect_to_https != 0) {
      own(std::make_unique<HttpsRedirectFilterFactory>(l.redirect_to_https));
    }
    for (const auto& fe : l.filters) {
      auto f = filters.build(fe, config->file, errors, BuildSite{metrics, workers, ""});
      if (!f) continue;
      lr.filters.push_back(f.get());
      snap->filter_factories.push_back(std::move(f));
    }
    snap->listeners_with_filters = snap->listeners_with_filters || !lr.filters.empty();
    snap->listeners.push_back(lr);
  }
  const uint64_t default_body = config->listeners.empty() ? (16ull << 20)
                                                          : config->listeners[0].limits.body;

  for (const auto& rc : config->routes) {
    auto r = std::make_unique<Route>();
    r->name = rc.name;
    for (const auto& h : rc.match.hosts) {
      if (h.rfind("*.", 0) == 0) r->wildcard_hosts.push_back(core::ascii_lower(h.substr(1)));
      else r->exact_hosts.push_back(core::ascii_lower(h));
    }
    r->path_kind = rc.match.path_kind;
    r->path = rc.match.path;
    if (r->path_kind == RouteMatchConfig::kRegex) {
      r->path_regex = route_regex(r->path, *config, rc, errors);
    }
    r->methods = rc.match.methods;
    for (const auto& hm : rc.match.headers) {
      Route::CompiledHeaderMatch c{hm, nullptr};
      if (hm.kind == HeaderMatch::kRegex) c.re = route_regex(hm.value, *config, rc, errors);
      r->headers.push_back(std::move(c));
    }
    r->rewrite = rc.rewrite;
    if (rc.rewrite.regex) {
      r->rewrite_regex = route_regex(rc.rewrite.regex->first, *config, rc, errors);
    }
    r->target = rc.target;
    if (rc.target == RouteConfig::kCluster) r->cluster = snap->clusters.at(rc.cluster);
    if (rc.target == RouteConfig::kService) {
      // A service runs with its options from `services:`, or its defaults.
      FilterEntry entry;
      entry.name = rc.service;
      entry.path = "services." + rc.service;
      auto it = config->services.find(rc.service);
      if (it != config->services.end()) entry = it->second;
      core::ConfigErrors errors;
      r->handler =
          filters.build_service(entry, config->file, errors, BuildSite{metrics, workers, rc.name});
      if (!r->handler) {
        return core::Status::error(errors.empty() ? "service \"" + rc.service + "\" failed to build"
                                                  : errors.all()[0]);
      }
    } else if (rc.target == RouteConfig::kCluster) {
      r->handler = std::make_unique<ClusterHandlerFactory>(*r);
    } else if (rc.target == RouteConfig::kRespond) {
      r->handler = std::make_unique<RespondHandlerFactory>(rc.respond);
    } else if (rc.target == RouteConfig::kRedirect) {
      r->handler = std::make_unique<RedirectHandlerFactory>(rc.redirect);
    }
    r->max_body = rc.max_body.value_or(default_body);
    r->buffer_limit = rc.buffer_limit;
    r->timeout_ms = rc.timeout_ms.value_or(0);
    r->upgrades = rc.upgrades;
    for (const auto& fe : rc.filters) {
      auto f = filters.build(fe, config->file, errors, BuildSite{metrics, workers, rc.name});
      if (!f) continue;
      r->filters.push_back(f.get());
      snap->filter_factories.push_back(std::move(f));
    }
    const std::string labels = "route=\"" + rc.name + "\"";
    static const char* kClass[] = {"reset", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 6; ++i) {
      r->stats.rq_class[i] = metrics.counter("citadel_requests_total",
                                             "Downstream requests by route and status class",
                                             labels + ",class=\"" + kClass[i] + "\"");
    }
    r->stats.latency = metrics.histogram("citadel_request_duration_seconds",
                                         "Downstream request duration by route", labels);
    snap->routes.add(std::move(r));
  }
  if (!errors.empty()) return core::Status::error(errors.all().front());
  return std::shared_ptr<const Snapshot>(std::move(snap));
}

}  // namespace citadel::proxy
