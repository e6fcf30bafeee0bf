// Automatic certificates (ACME, RFC 8555) for listeners with `tls.acme`, on the control thread.
//
// For each acme block (blocks with the same first domain share one certificate) a job keeps a
// certificate: it reads the last one back from the data directory
// (`{data_dir}/acme/{server}/{first domain}/cert.pem` and `key.pem`; the account key beside them
// in `{server}/account.key`, all 0600 in 0700 directories), or serves a self-signed placeholder
// until the first is issued. It orders one when there is none, when the stored one does not name
// every configured domain, and ahead of expiry (`renew_before`, by default when a third of the
// validity is left): directory, account (its key made once and kept), order, one authorization
// per domain answered with HTTP-01 (the key authorization served on plain listeners, see
// proxy/listener_policy.h) or TLS-ALPN-01 (RFC 8737: a challenge certificate for handshakes
// offering "acme-tls/1", see http/transport/tls_context.h), finalize with a fresh P-256 key's
// CSR, download the chain, check it (it parses, matches the key, names every domain), store it,
// and publish a snapshot that serves it: no restart, no connection dropped. A failure anywhere
// withdraws the challenge answers and retries after `retry` (1 minute by default), doubling up to
// a day (or as long as the server's Retry-After says), while the certificate it has keeps being
// served. Each job has its own HTTP client on the control thread's loop (https, verified against
// `ca` or the system's store); nonces are taken from every answer and a badNonce error is
// retried with a fresh one.
//
// Thread: the control thread only. Ownership: the manager owns its jobs; a job owns its HTTP
// client, timer and request, so destroying it cancels everything it started.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "http/client/http_client.h"
#include "observe/log.h"
#include "proxy/config.h"
#include "proxy/snapshot.h"

namespace citadel::cli {

class AcmeManager {
 public:
  // Builds and serves a snapshot with the state; false when it could not (the job then does not
  // ask the server to validate an answer nobody serves).
  using Publish = std::function<bool(std::shared_ptr<const proxy::AcmeState>)>;
  // `client` holds the resolver settings every job's HTTP client starts from (each gets its own
  // TLS context from its block's `ca`); `user_agent` goes with every request (RFC 8555, 6.1).
  AcmeManager(core::EventLoop& loop, core::BlockPool& blocks, observe::ErrorLog& log,
              http::client::ClientOptions client, std::string user_agent, Publish publish);
  ~AcmeManager();
  AcmeManager(const AcmeManager&) = delete;
  AcmeManager& operator=(const AcmeManager&) = delete;

  // The state to build a snapshot of `cfg` with: a certificate for each of its acme blocks (the
  // one a job has, else read from the data directory, else a placeholder). Reads files; no
  // network. Errors only when no placeholder can be made.
  core::Result<std::shared_ptr<const proxy::AcmeState>> prepare(const proxy::Config& cfg);

  // `cfg` is now served (start, a reload): jobs start for its new or changed acme blocks, go on
  // unchanged for the others, stop for the blocks it no longer has (their challenge answers are
  // withdrawn). Not to be called from a job's callback (it may destroy that job).
  void start(const proxy::Config& cfg);

  // Prometheus lines: citadel_acme_certificate_expiry_seconds{domain},
  // citadel_acme_orders_total{result}, citadel_acme_bad_nonces_total.
  void collect(std::string& out) const;

  class Job;

 private:
  friend class Job;
  // Publishes a state derived from the current one by `change`; false when it is not served.
  bool update(const std::function<void(proxy::AcmeState&)>& change);

  core::EventLoop& loop_;
  core::BlockPool& blocks_;
  observe::ErrorLog& log_;
  http::client::ClientOptions client_options_;
  std::string user_agent_;
  Publish publish_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;  // by first domain (unique: config_loader)
  std::shared_ptr<const proxy::AcmeState> state_ = std::make_shared<proxy::AcmeState>();
  uint64_t orders_ok_ = 0;
  uint64_t orders_failed_ = 0;
  uint64_t bad_nonces_ = 0;
};

// Where an acme block's files live: `{data_dir}/acme/{server}` (the directory URL's host and
// port, and a digest of the whole URL) and the certificate's own directory under it.
std::string acme_account_dir(const std::string& data_dir, const proxy::AcmeConfig& acme);
std::string acme_certificate_dir(const std::string& data_dir, const proxy::AcmeConfig& acme);

}  // namespace citadel::cli
