// The server: wires the workers, the control thread (config load and reload, admin listener,
// health checks, signals) and the process-wide services. One per process, created by main.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cli/admin.h"
#include "cli/file_stamp.h"
#include "cli/acme_client.h"
#include "cli/ocsp_stapler.h"
#include "core/event_loop.h"
#include "http/http1/server_connection.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "core/blocking_pool.h"
#include "http/date.h"
#include "proxy/extension_registry.h"
#include "proxy/health_checker.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"
#include "store/stores.h"

namespace citadel::cli {

class Server final : public AdminBackend, public http::ConnectionOwner {
 public:
  // `stores`: the engines platform services use; configured from the config at start, closed
  // when the server stops (before its workers' loops go).
  Server(std::string config_path, const proxy::ExtensionRegistry& filters, store::Stores& stores);
  ~Server();

  // Loads the config, starts everything, serves until SIGTERM/SIGINT has drained. Returns the
  // process exit code.
  int run();

  // AdminBackend (control thread)
  std::string metrics_text() override;
  bool ready() const override { return current_ != nullptr && !draining_; }
  std::string config_json() override;
  std::string clusters_json() override;
  AdminResponse reload() override;

  // ConnectionOwner for admin connections.
  void on_connection_closed(http::DownstreamConnection& c) override;
  bool draining() const override { return false; }
  std::string_view http_date() override { return date_.now(); }

 private:
  struct ListenerSockets {
    std::string name;
    proxy::HostPort configured;
    proxy::HostPort bound;
    bool merge_slashes = true;
    std::vector<int> fds;  // one per worker, until handed to the workers
  };
  class SignalHandler;
  class AdminListener;

  core::Status open_listener(const proxy::ListenerConfig& l, ListenerSockets& out);
  core::Status apply_listeners(const proxy::Config& cfg);
  void start_drain();
  static void on_drain_tick(void* self);
  // Starts looking up the current clusters' DNS names on a helper thread (getaddrinfo blocks;
  // the control thread also runs health checks and the admin listener).
  static void on_dns_refresh(void* self);
  // Back on the control thread with the answers: publishes a snapshot when an address changed.
  void on_dns_answers(const proxy::LookupTable& answers);
  void arm_dns_refresh();
  // Session ticket keys get a new current key every kTicketRotationMs; tickets sealed with the
  // two before still open (for as long again each), so no client loses its session at once.
  static constexpr uint64_t kTicketRotationMs = 12ull * 3600 * 1000;
  static void on_ticket_rotation(void* self);
  // Certificate files (listeners' and clusters' TLS files) are watched: a change, once the file
  // has stayed the same for one more look, reloads the config, so that a renewed certificate
  // is served without a signal. A half-written pair is refused like any reload and retried.
  static void on_cert_watch(void* self);
  void watch_certificate_files();
  void raise_fd_limit();
  // Makes `snap` current: posts it to every worker, then follow_snapshot().
  void publish(std::shared_ptr<const proxy::Snapshot> snap);
  // Points the health checker and the DNS refresh at the current snapshot's clusters.
  void follow_snapshot();

  std::string config_path_;
  const proxy::ExtensionRegistry& filters_;
  store::Stores& stores_;
  core::EventLoop loop_;
  observe::ErrorLog log_;
  std::unique_ptr<observe::Registry> metrics_;
  // Blocking work of filters and services; stopped after the workers, whose loops then hand
  // the cancelled jobs back to their owners.
  std::unique_ptr<core::BlockingPool> blocking_;
  std::unique_ptr<observe::AccessLogWriter> access_log_;
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::shared_ptr<const proxy::Snapshot> current_;
  std::vector<ListenerSockets> listeners_;
  std::unique_ptr<proxy::HealthChecker> health_;
  std::unique_ptr<SignalHandler> signals_;
  std::unique_ptr<AdminListener> admin_;
  proxy::HostPort admin_address_;  // as bound (the port chosen), while admin_ is set
  std::unique_ptr<AdminStreamFactory> admin_factory_;
  core::BlockPool admin_blocks_;
  core::Timer drain_timer_;
  core::Timer dns_timer_;
  core::Timer ticket_timer_;
  core::Timer cert_timer_;
  // The control thread's HTTP client (OCSP fetches) and the stapler using it.
  std::unique_ptr<http::client::HttpClient> control_client_;
  std::unique_ptr<OcspStapler> stapler_;
  void publish_staples(std::shared_ptr<const OcspStaples> staples);
  // Certificates obtained with ACME and the answers to its challenges.
  std::unique_ptr<AcmeManager> acme_;
  bool publish_acme(std::shared_ptr<const proxy::AcmeState> state);
  std::vector<FileStamp> cert_stamps_;    // as the current config was loaded
  std::vector<FileStamp> cert_pending_;   // a change seen once, acted on when it stays
  // Shared with the lookup thread, which posts its answers only while `server` is set.
  struct DnsMailbox {
    std::mutex mu;
    Server* server = nullptr;
  };
  std::shared_ptr<DnsMailbox> dns_mailbox_;
  bool dns_in_flight_ = false;
  uint64_t drain_deadline_ms_ = 0;
  uint64_t version_ = 0;
  bool draining_ = false;
  size_t nworkers_ = 1;
  observe::Counter* reloads_ = nullptr;
  observe::Counter* reload_failures_ = nullptr;
  http::DateCache date_;  // admin responses' Date
};

// How open_listen_socket binds. kReusePort: one socket of a worker group (SO_REUSEPORT).
// kExclusive: a single socket that fails where any other socket listens. kProbe: kExclusive,
// but only bound and closed at once: checks that nobody else listens there (returns -1).
enum class ListenMode { kReusePort, kExclusive, kProbe };

// Opens a non-blocking listening socket on `addr`; port 0 picks a free port. `bound` gets the
// address with the port chosen; `loopback`, whether it only accepts from this host. An address
// some other socket listens on fails with "address already in use by another process".
core::Result<int> open_listen_socket(const proxy::HostPort& addr, proxy::HostPort* bound,
                                     ListenMode mode = ListenMode::kReusePort,
                                     bool* loopback = nullptr);

}  // namespace citadel::cli

