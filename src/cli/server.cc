#include "cli/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

#include "citadel/build_info.h"
#include "http/transport/socket_transport.h"
#include "proxy/upstream_pool.h"

namespace citadel::cli {

using observe::LogLevel;

namespace {

std::string listen_error(const proxy::HostPort& addr, int err) {
  // SO_REUSEPORT groups are open to any process of the same user, so EADDRINUSE here means a
  // socket that is not ours (our own listeners never overlap: the loader refuses that).
  return "cannot listen on " + addr.text() + ": " +
         (err == EADDRINUSE ? "address already in use by another process" : std::strerror(err));
}

bool is_loopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    return (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace

core::Result<int> open_listen_socket(const proxy::HostPort& addr, proxy::HostPort* bound,
                                     ListenMode mode, bool* loopback) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int rc = getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return core::Status::error("cannot resolve " + addr.text() + ": " + gai_strerror(rc));
  }
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return core::Status::error(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  // SO_REUSEADDR: a restart binds despite the previous process's TIME_WAIT connections. It
  // never lets two sockets listen on one address; only SO_REUSEPORT does.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (mode == ListenMode::kReusePort) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
      (mode != ListenMode::kProbe && ::listen(fd, 4096) != 0)) {
    int err = errno;
    ::close(fd);
    freeaddrinfo(res);
    return core::Status::error(listen_error(addr, err));
  }
  freeaddrinfo(res);
  if (mode == ListenMode::kProbe) {
    ::close(fd);
    return -1;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (bound != nullptr) {
    *bound = addr;
    bound->port = ntohs(ss.ss_family == AF_INET
                            ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                            : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  if (loopback != nullptr) *loopback = is_loopback(ss);
  return fd;
}

// Reads signals through a signalfd on the control loop.
class Server::SignalHandler final : public core::IoHandler {
 public:
  explicit SignalHandler(Server& s) : server_(s) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&set, sig);
    fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    server_.loop_.add(fd_, this, EPOLLIN);
  }
  ~SignalHandler() {
    server_.loop_.remove(fd_);
    ::close(fd_);
  }
  void on_io(uint32_t) override {
    signalfd_siginfo si;
    while (::read(fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      switch (si.ssi_signo) {
        case SIGHUP: {
          AdminResponse r = server_.reload();
          (void)r;
          break;
        }
        case SIGUSR1:
          if (server_.access_log_) server_.access_log_->reopen();
          server_.log_.log(LogLevel::kInfo, "SIGUSR1: reopening logs");
          break;
        case SIGTERM:
        case SIGINT:
          server_.start_drain();
          break;
        default:
          break;
      }
    }
  }

 private:
  Server& server_;
  int fd_ = -1;
};

// Accepts admin connections on the control loop.
class Server::AdminListener final : public core::IoHandler {
 public:
  AdminListener(Server& s, int fd) : server_(s), fd_(fd), retry_(&AdminListener::retry, this) {
    auto settings = std::make_shared<http::ServerSettings>();
    settings->header_timeout_ms = 5000;
    settings->keepalive_timeout_ms = 15'000;
    settings_ = settings;
    server_.loop_.add(fd_, this, EPOLLIN);
  }
  ~AdminListener() {
    server_.loop_.remove(fd_);
    ::close(fd_);
    while (conns_ != nullptr) {
      auto* c = conns_;
      conns_ = c->next;
      c->next = c->prev = nullptr;
      c->abort();
    }
  }
  void on_io(uint32_t) override {
    while (true) {
      int fd = -1;
      http::ConnectionInfo info;
      auto r = http::accept_client(fd_, fd, info);
      if (r == http::AcceptResult::kNoDescriptors) {
        server_.loop_.arm(retry_, http::kAcceptRetryMs);
      }
      if (r != http::AcceptResult::kAccepted) return;
      // The admin API speaks HTTP/1.1 over a plain socket (TLS and ALPN would pick here too).
      http::DownstreamConnection* c = new http::http1::PlainServerConnection(
          http::SocketTransport(fd), info, settings_, server_.loop_, server_.admin_blocks_,
          *server_.admin_factory_, server_);
      c->next = conns_;
      if (conns_ != nullptr) conns_->prev = c;
      conns_ = c;
      if (!c->start()) c->abort();
    }
  }
  void unlink(http::DownstreamConnection& c) {
    if (c.prev != nullptr) c.prev->next = c.next;
    else if (conns_ == &c) conns_ = c.next;
    if (c.next != nullptr) c.next->prev = c.prev;
    c.prev = c.next = nullptr;
  }

 private:
  static void retry(void* self) { static_cast<AdminListener*>(self)->on_io(EPOLLIN); }

  Server& server_;
  int fd_;
  core::Timer retry_;
  std::shared_ptr<const http::ServerSettings> settings_;
  http::DownstreamConnection* conns_ = nullptr;
};

Server::Server(std::string config_path, const proxy::ExtensionRegistry& filters,
               store::Stores& stores)
    : config_path_(std::move(config_path)),
      filters_(filters),
      stores_(stores),
      drain_timer_(&Server::on_drain_tick, this),
      dns_timer_(&Server::on_dns_refresh, this),
      ticket_timer_(&Server::on_ticket_rotation, this),
      cert_timer_(&Server::on_cert_watch, this),
      dns_mailbox_(std::make_shared<DnsMailbox>()) {
  dns_mailbox_->server = this;
}

// Every connection and upstream socket is a descriptor: use the hard limit, not the (often
// 1024) soft one, as haproxy does.
void Server::raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = before;
  }
  log_.log(LogLevel::kInfo, "file descriptor limit: %llu",
           static_cast<unsigned long long>(rl.rlim_cur));
}

Server::~Server() {
  {
    // A lookup still running (a slow or dead DNS server) is left to finish on its own and
    // finds nobody to deliver to.
    std::lock_guard<std::mutex> lock(dns_mailbox_->mu);
    dns_mailbox_->server = nullptr;
  }
  admin_.reset();
  health_.reset();
  for (auto& w : workers_) w->stop();
  if (blocking_) blocking_->stop();  // cancelled jobs wait in the stopped loops' queues
  stores_.close();                   // so do the stores' unanswered transactions
  workers_.clear();                  // each worker runs them (its destructor) before it goes
  if (access_log_) access_log_->stop();
  signals_.reset();
  loop_.clear_graveyard();
}

void Server::on_connection_closed(http::DownstreamConnection& c) {
  if (admin_) admin_->unlink(c);
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
}

core::Status Server::open_listener(const proxy::ListenerConfig& l, ListenerSockets& out) {
  out.name = l.name;
  out.configured = l.address;
  out.merge_slashes = l.merge_slashes;
  auto fail = [&](const std::string& why) {
    return core::Status::error(config_path_ + ":" + std::to_string(l.line) +
                               ": listeners: " + l.name + ": " + why);
  };
  // Any process of our user may join a SO_REUSEPORT group, so binding the group alone would
  // share the address with a second Citadel (or anything else) already listening there and
  // split its connections. A plain socket cannot bind where any other socket listens: bind one
  // first. Port 0 picks a free port; an address one of our listeners holds (a reload that
  // renames a listener, or fixes the port a port-0 listener got) is ours to reuse. The probe is
  // closed before the group binds, so two processes starting in the same instant could still
  // both pass it.
  bool ours = false;
  for (const auto& cur : listeners_) ours = ours || proxy::addresses_overlap(cur.bound, l.address);
  if (l.address.port != 0 && !ours) {
    if (admin_ && proxy::addresses_overlap(admin_address_, l.address)) {
      return fail("cannot listen on " + l.address.text() +
                  ": the admin listener holds it (admin.address changes take effect at restart)");
    }
    auto probe = open_listen_socket(l.address, nullptr, ListenMode::kProbe);
    if (!probe.ok()) return fail(probe.error().message());
  }
  proxy::HostPort want = l.address;
  for (size_t i = 0; i < nworkers_; ++i) {
    auto fd = open_listen_socket(want, i == 0 ? &out.bound : nullptr);
    if (!fd.ok()) {
      for (int f : out.fds) ::close(f);
      out.fds.clear();
      return fail(fd.error().message());
    }
    if (i == 0) want.port = out.bound.port;  // port 0: every worker shares the chosen port
    out.fds.push_back(fd.value());
  }
  return {};
}

core::Status Server::apply_listeners(const proxy::Config& cfg) {
  std::vector<ListenerSockets> next;
  std::vector<ListenerSockets> opened;
  std::vector<std::pair<std::string, std::string>> renamed;  // old name, new name
  auto named_in_config = [&](const std::string& name) {
    for (const auto& l : cfg.listeners) {
      if (l.name == name) return true;
    }
    return false;
  };
  // The same address, or the port a port-0 listener got now written into the config.
  auto same_address = [](const ListenerSockets& cur, const proxy::ListenerConfig& l) {
    return cur.configured.text() == l.address.text() ||
           (l.address.port != 0 && cur.bound.text() == l.address.text());
  };
  for (const auto& l : cfg.listeners) {
    bool kept = false;
    for (const auto& cur : listeners_) {
      if (cur.name == l.name && same_address(cur, l)) {
        next.push_back(cur);
        kept = true;
      }
    }
    if (kept) continue;
    // A listener renamed on the same address keeps its sockets: closing them would reset the
    // connections the kernel has already queued on them.
    for (const auto& cur : listeners_) {
      if (kept || !same_address(cur, l) || named_in_config(cur.name)) continue;
      bool taken = false;
      for (const auto& r : renamed) taken = taken || r.first == cur.name;
      if (taken) continue;
      renamed.emplace_back(cur.name, l.name);
      next.push_back(cur);
      next.back().name = l.name;
      next.back().merge_slashes = l.merge_slashes;
      kept = true;
    }
    if (kept) continue;
    ListenerSockets ls;
    core::Status s = open_listener(l, ls);
    if (!s.ok()) {
      // Nothing has changed yet: close what this attempt opened and keep the old listeners.
      for (auto& o : opened) {
        for (int f : o.fds) ::close(f);
      }
      return s;
    }
    opened.push_back(std::move(ls));
  }
  for (const auto& cur : listeners_) {
    bool stays = false;
    for (const auto& n : next) stays = stays || n.name == cur.name;
    for (const auto& r : renamed) stays = stays || r.first == cur.name;
    if (!stays) {
      for (auto& w : workers_) w->remove_listener(cur.name);
      log_.log(LogLevel::kInfo, "listener %s closed", cur.name.c_str());
    }
  }
  for (const auto& r : renamed) {
    for (auto& w : workers_) w->rename_listener(r.first, r.second);
    log_.log(LogLevel::kInfo, "listener %s renamed %s", r.first.c_str(), r.second.c_str());
  }
  for (auto& o : opened) {
    for (size_t i = 0; i < nworkers_; ++i) {
      workers_[i]->add_listener(o.name, o.fds[i], o.merge_slashes);
    }
    o.fds.clear();
    log_.log(LogLevel::kInfo, "listener %s listening on %s", o.name.c_str(),
             o.bound.text().c_str());
    next.push_back(std::move(o));
  }
  listeners_ = std::move(next);
  return {};
}

int Server::run() {
  core::ConfigErrors errors;
  auto cfg = proxy::load_config(config_path_, filters_, errors);
  if (!cfg) {
    for (const auto& e : errors.all()) std::fprintf(stderr, "%s\n", e.c_str());
    return 2;
  }
  log_.set_level(observe::parse_level(cfg->error_log_level));
  stores_.configure(store::StoreOptions{cfg->data_dir});
  nworkers_ = cfg->workers;
  metrics_ = std::make_unique<observe::Registry>(nworkers_);
  reloads_ = metrics_->counter("citadel_config_reloads_total", "Successful config reloads");
  reload_failures_ =
      metrics_->counter("citadel_config_reload_failures_total", "Refused config reloads");
  if (cfg->access_log.enabled) {
    access_log_ = std::make_unique<observe::AccessLogWriter>(nworkers_, cfg->access_log.path);
    access_log_->start();
  }
  proxy::WorkerServices services;
  services.metrics = metrics_.get();
  services.workers = nworkers_;
  blocking_ = std::make_unique<core::BlockingPool>();
  if (core::Status st = blocking_->start(); !st.ok()) {
    std::fprintf(stderr, "citadel: blocking pool: %s\n", st.message().c_str());
    return 1;
  }
  services.blocking = blocking_.get();
  services.log = &log_;
  services.access_log = access_log_.get();
  services.cx_total = metrics_->counter("citadel_downstream_connections_total",
                                        "Accepted downstream connections");
  services.cx_active = metrics_->gauge("citadel_downstream_connections_active",
                                       "Open downstream connections");
  services.protocol_errors = metrics_->counter(
      "citadel_downstream_protocol_errors_total",
      "Requests refused before routing: malformed, over a limit, or a head that timed out");
  services.no_route = metrics_->counter("citadel_no_route_total", "Requests matching no route");
  const char* paused_help = "Times a listener stopped accepting (until a connection closes, or "
                            "for 100ms when out of file descriptors)";
  services.accept_paused_limit = metrics_->counter("citadel_downstream_accept_paused_total",
                                                   paused_help, "reason=\"connection_limit\"");
  services.accept_paused_fds = metrics_->counter("citadel_downstream_accept_paused_total",
                                                 paused_help, "reason=\"no_descriptors\"");
  services.tls_handshake_errors = metrics_->counter(
      "citadel_tls_handshake_errors_total", "TLS handshakes that failed or timed out");
  {
    // https for the workers' HTTP clients: the system's CA store, loaded once for all workers.
    auto tls = http::TlsClientContext::create(http::TlsClientOptions{});
    if (tls.ok()) {
      services.http_client.tls = std::move(tls.value());
    } else {
      log_.log(LogLevel::kError, "http client: no TLS (https requests will fail): %s",
               tls.error().message().c_str());
    }
  }
  raise_fd_limit();

  std::shared_ptr<const proxy::Config> shared_cfg(std::move(cfg));
  acme_ = std::make_unique<AcmeManager>(
      loop_, admin_blocks_, log_, services.http_client, std::string("citadel/") + kVersion,
      [this](std::shared_ptr<const proxy::AcmeState> state) {
        return publish_acme(std::move(state));
      });
  auto acme_state = acme_->prepare(*shared_cfg);
  if (!acme_state.ok()) {
    std::fprintf(stderr, "%s\n", acme_state.error().message().c_str());
    return 2;
  }
  auto snap = proxy::build_snapshot(shared_cfg, nullptr, filters_, *metrics_, nworkers_,
                                    ++version_, proxy::lookup_blocking,
                                    proxy::ControlState{nullptr, acme_state.value()});
  if (!snap.ok()) {
    std::fprintf(stderr, "%s\n", snap.error().message().c_str());
    return 2;
  }
  current_ = snap.value();
  loop_.arm(ticket_timer_, kTicketRotationMs);
  {
    http::client::ClientOptions o = services.http_client;
    control_client_ = std::make_unique<http::client::HttpClient>(loop_, admin_blocks_, o);
    stapler_ = std::make_unique<OcspStapler>(
        loop_, *control_client_, log_,
        [this](std::shared_ptr<const OcspStaples> staples) {
          publish_staples(std::move(staples));
        });
  }
  watch_certificate_files();
  acme_->start(*shared_cfg);
  for (size_t i = 0; i < nworkers_; ++i) {
    workers_.push_back(std::make_unique<proxy::Worker>(i, services));
    workers_.back()->publish(current_);
  }
  for (auto& w : workers_) w->start();
  core::Status ls = apply_listeners(*shared_cfg);
  if (!ls.ok()) {
    std::fprintf(stderr, "%s\n", ls.message().c_str());
    return 1;
  }
  admin_factory_ = std::make_unique<AdminStreamFactory>(*this);
  if (shared_cfg->admin) {
    // One socket on the control thread: no SO_REUSEPORT, so nobody else can be listening there.
    bool loopback = false;
    auto fd =
        open_listen_socket(*shared_cfg->admin, &admin_address_, ListenMode::kExclusive, &loopback);
    if (!fd.ok()) {
      std::fprintf(stderr, "%s:%d: admin.address: %s\n", config_path_.c_str(),
                   shared_cfg->admin_line, fd.error().message().c_str());
      return 1;
    }
    admin_ = std::make_unique<AdminListener>(*this, fd.value());
    log_.log(LogLevel::kInfo, "admin listening on %s", admin_address_.text().c_str());
    if (!loopback) {
      log_.log(LogLevel::kWarn,
               "the admin listener on %s is reachable from other hosts and has no "
               "authentication (anyone can read /config and POST /config/reload); bind it to "
               "127.0.0.1 unless a firewall keeps others out",
               admin_address_.text().c_str());
    }
  }
  health_ = std::make_unique<proxy::HealthChecker>(loop_, log_);
  follow_snapshot();  // the workers got the first snapshot before their listeners

  metrics_->add_collector([this](std::string& out) {
    out += "# HELP citadel_build_info Build information\n# TYPE citadel_build_info gauge\n";
    out += std::string("citadel_build_info{version=\"") + kVersion + "\",revision=\"" +
           kGitRevision + "\"} 1\n";
    out += "# HELP citadel_config_version Version of the serving config snapshot\n"
           "# TYPE citadel_config_version gauge\n";
    out += "citadel_config_version " + std::to_string(version_) + "\n";
    out += "# HELP citadel_endpoint_healthy 1 when the endpoint is usable (health and outlier)\n"
           "# TYPE citadel_endpoint_healthy gauge\n";
    uint64_t now = core::monotonic_ms();
    std::string ejected;
    for (const auto& [name, c] : current_->clusters) {
      for (const auto& e : c->endpoints()) {
        std::string l = "{cluster=\"" + name + "\",endpoint=\"" + e->label + "\"}";
        out += "citadel_endpoint_healthy" + l + " " + (e->usable(now) ? "1" : "0") + "\n";
        ejected += "citadel_endpoint_ejected" + l + " " +
                   (e->ejected_until_ms.load() > now ? "1" : "0") + "\n";
      }
    }
    out += "# HELP citadel_endpoint_ejected 1 while outlier detection ejects the endpoint\n"
           "# TYPE citadel_endpoint_ejected gauge\n" + ejected;
    if (access_log_) {
      out += "# HELP citadel_access_log_dropped_total Access log lines dropped (writer behind)\n"
             "# TYPE citadel_access_log_dropped_total counter\n";
      out += "citadel_access_log_dropped_total " + std::to_string(access_log_->dropped()) + "\n";
    }
    if (acme_) acme_->collect(out);
    out += "# HELP citadel_ready 1 when serving and not draining\n# TYPE citadel_ready gauge\n";
    out += std::string("citadel_ready ") + (ready() ? "1" : "0") + "\n";
  });

  signals_ = std::make_unique<SignalHandler>(*this);
  log_.log(LogLevel::kInfo, "citadel %s started: %zu workers, config %s", kVersion, nworkers_,
           config_path_.c_str());
  loop_.run();
  acme_.reset();     // its jobs' requests go with their clients, on the loop's thread
  stapler_.reset();  // its requests go with the client, on the loop's thread
  control_client_.reset();
  log_.log(LogLevel::kInfo, "stopped");
  return 0;
}

AdminResponse Server::reload() {
  core::ConfigErrors errors;
  auto cfg = proxy::load_config(config_path_, filters_, errors);
  auto refuse = [this](const std::string& why) {
    reload_failures_->add(nworkers_);
    log_.log(LogLevel::kError, "reload refused, the previous config keeps serving:\n%s",
             why.c_str());
    return AdminResponse{400, "text/plain; charset=utf-8",
                         "reload refused; the previous config keeps serving:\n" + why};
  };
  if (!cfg) {
    std::string all;
    for (const auto& e : errors.all()) all += e + "\n";
    return refuse(all);
  }
  if (cfg->workers != nworkers_) {
    log_.log(LogLevel::kWarn, "reload: `workers` changes take effect at restart (%zu workers)",
             nworkers_);
  }
  std::shared_ptr<const proxy::Config> shared_cfg(std::move(cfg));
  std::shared_ptr<const proxy::AcmeState> acme_state;  // null while draining: carried over
  if (acme_) {
    auto prepared = acme_->prepare(*shared_cfg);
    if (!prepared.ok()) return refuse(prepared.error().message() + "\n");
    acme_state = prepared.value();
  }
  auto snap = proxy::build_snapshot(shared_cfg, current_.get(), filters_, *metrics_, nworkers_,
                                    version_ + 1, proxy::lookup_blocking,
                                    proxy::ControlState{nullptr, acme_state});
  if (!snap.ok()) return refuse(snap.error().message() + "\n");
  // Listeners first: a new address that cannot be bound refuses the whole reload.
  core::Status ls = apply_listeners(*shared_cfg);
  if (!ls.ok()) {
    return refuse(ls.message() + "\n");
  }
  ++version_;
  publish(snap.value());
  if (acme_) acme_->start(*shared_cfg);
  reloads_->add(nworkers_);
  log_.log(LogLevel::kInfo, "config reloaded (version %llu)",
           static_cast<unsigned long long>(version_));
  return {200, "text/plain; charset=utf-8",
          "reloaded: version " + std::to_string(version_) + "\n"};
}

void Server::publish(std::shared_ptr<const proxy::Snapshot> snap) {
  current_ = std::move(snap);
  for (auto& w : workers_) w->publish(current_);
  follow_snapshot();
  watch_certificate_files();
}

void Server::publish_staples(std::shared_ptr<const OcspStaples> staples) {
  if (draining_ || !current_) return;
  auto snap = proxy::build_snapshot(current_->config, current_.get(), filters_, *metrics_,
                                    nworkers_, version_ + 1, proxy::lookup_blocking,
                                    proxy::ControlState{std::move(staples), nullptr});
  if (!snap.ok()) {
    log_.log(LogLevel::kWarn, "OCSP: cannot publish the new responses: %s",
             snap.error().message().c_str());
    return;
  }
  ++version_;
  publish(snap.value());
}

bool Server::publish_acme(std::shared_ptr<const proxy::AcmeState> state) {
  if (draining_ || !current_) return false;
  auto snap = proxy::build_snapshot(current_->config, current_.get(), filters_, *metrics_,
                                    nworkers_, version_ + 1, proxy::lookup_blocking,
                                    proxy::ControlState{nullptr, std::move(state)});
  if (!snap.ok()) {
    log_.log(LogLevel::kWarn, "ACME: cannot publish the new certificate or answers: %s",
             snap.error().message().c_str());
    return false;
  }
  ++version_;
  publish(snap.value());
  return true;
}

namespace {

constexpr uint64_t kCertWatchMs = 2000;

std::vector<std::string> tls_files(const proxy::Config& cfg) {
  std::vector<std::string> files;
  for (const auto& l : cfg.listeners) {
    if (!l.tls) continue;
    for (const auto& c : l.tls->certificates) {
      for (const std::string* f : {&c.cert, &c.key, &c.ocsp}) {
        if (!f->empty()) files.push_back(*f);
      }
    }
    if (!l.tls->client_ca.empty()) files.push_back(l.tls->client_ca);
  }
  for (const auto& c : cfg.clusters) {
    if (!c.tls) continue;
    for (const std::string* f : {&c.tls->ca, &c.tls->cert, &c.tls->key}) {
      if (!f->empty()) files.push_back(*f);
    }
  }
  return files;
}

}  // namespace

void Server::watch_certificate_files() {
  if (stapler_) {
    // Listener certificates without an `ocsp` file get fetched responses.
    std::vector<std::string> staple;
    for (const auto& l : current_->config->listeners) {
      if (!l.tls) continue;
      for (const auto& c : l.tls->certificates) {
        if (c.ocsp.empty()) staple.push_back(c.cert);
      }
    }
    stapler_->set_certificates(staple);
  }
  cert_stamps_.clear();
  cert_pending_.clear();
  for (const auto& path : tls_files(*current_->config)) cert_stamps_.push_back(FileStamp::of(path));
  if (cert_stamps_.empty()) loop_.timers().cancel(cert_timer_);
  else loop_.arm(cert_timer_, kCertWatchMs);
}

void Server::on_cert_watch(void* arg) {
  auto* s = static_cast<Server*>(arg);
  if (s->draining_) return;
  std::vector<FileStamp> now;
  for (const auto& old : s->cert_stamps_) now.push_back(FileStamp::of(old.path));
  if (now == s->cert_stamps_) {
    s->cert_pending_.clear();
  } else if (now == s->cert_pending_) {
    // Changed, and the same as a look ago: the writer is done (a renewal writes the
    // certificate and the key one after the other).
    s->log_.log(LogLevel::kInfo, "certificate files changed: reloading");
    s->cert_stamps_ = now;  // a refused reload is not retried until the files change again
    s->cert_pending_.clear();
    s->reload();            // publishes and re-arms on success
  } else {
    s->cert_pending_ = std::move(now);
  }
  s->loop_.arm(s->cert_timer_, kCertWatchMs);
}

void Server::follow_snapshot() {
  std::vector<std::shared_ptr<proxy::Cluster>> clusters;
  for (const auto& [_, c] : current_->clusters) clusters.push_back(c);
  health_->set_clusters(clusters);
  arm_dns_refresh();
}

void Server::on_ticket_rotation(void* arg) {
  auto* s = static_cast<Server*>(arg);
  if (s->current_ && s->current_->ticket_keys) s->current_->ticket_keys->rotate();
  s->loop_.arm(s->ticket_timer_, kTicketRotationMs);
}

void Server::arm_dns_refresh() {
  uint64_t every = 0;
  for (const auto& [_, c] : current_->clusters) {
    if (!c->has_dns_names()) continue;
    uint64_t r = c->config().dns_refresh_ms;
    if (r > 0 && (every == 0 || r < every)) every = r;
  }
  if (every == 0) loop_.timers().cancel(dns_timer_);
  else loop_.arm(dns_timer_, every);
}

void Server::on_dns_refresh(void* arg) {
  auto* s = static_cast<Server*>(arg);
  if (s->draining_ || s->dns_in_flight_) return;
  s->dns_in_flight_ = true;
  try {
    std::thread([names = proxy::dns_names(s->current_->config->clusters),
                 mailbox = s->dns_mailbox_] {
      auto answers = std::make_shared<proxy::LookupTable>(proxy::lookup_all(names));
      std::lock_guard<std::mutex> lock(mailbox->mu);
      if (mailbox->server == nullptr) return;
      Server* server = mailbox->server;
      server->loop_.post([server, answers] { server->on_dns_answers(*answers); });
    }).detach();
  } catch (const std::system_error& e) {  // no thread to be had: try at the next refresh
    s->dns_in_flight_ = false;
    s->log_.log(LogLevel::kWarn, "DNS refresh skipped: %s", e.what());
    s->arm_dns_refresh();
  }
}

void Server::on_dns_answers(const proxy::LookupTable& answers) {
  dns_in_flight_ = false;
  if (draining_) return;
  auto snap = proxy::build_snapshot(current_->config, current_.get(), filters_, *metrics_,
                                    nworkers_, version_ + 1, proxy::table_lookup(answers));
  bool changed = false;
  if (snap.ok()) {
    for (const auto& [name, c] : snap.value()->clusters) {
      auto it = current_->clusters.find(name);
      changed = changed || it == current_->clusters.end() || it->second != c;
    }
  } else {
    log_.log(LogLevel::kWarn, "DNS refresh failed, keeping the old addresses: %s",
             snap.error().message().c_str());
  }
  if (!changed) {
    arm_dns_refresh();
    return;
  }
  ++version_;
  log_.log(LogLevel::kInfo, "DNS refresh: endpoint addresses changed (version %llu)",
           static_cast<unsigned long long>(version_));
  publish(snap.value());
}

void Server::start_drain() {
  if (draining_) return;
  draining_ = true;
  log_.log(LogLevel::kInfo, "draining: no new connections, finishing requests in flight");
  acme_.reset();  // no order is started or answered while the process goes
  for (auto& w : workers_) w->drain();
  drain_deadline_ms_ = loop_.now_ms() + current_->config->drain_timeout_ms;
  loop_.arm(drain_timer_, 20);
}

void Server::on_drain_tick(void* arg) {
  auto* s = static_cast<Server*>(arg);
  bool all = true;
  for (auto& w : s->workers_) all = all && w->drained();
  if (all || s->loop_.now_ms() >= s->drain_deadline_ms_) {
    if (!all) s->log_.log(LogLevel::kWarn, "drain timeout: closing remaining connections");
    s->loop_.stop();
    return;
  }
  s->loop_.arm(s->drain_timer_, 20);
}

std::string Server::metrics_text() { return metrics_->render(); }

namespace {

bool looks_secret(const std::string& key) {
  std::string k;
  for (char c : key) k.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return k.find("password") != std::string::npos || k.find("secret") != std::string::npos ||
         k.find("token") != std::string::npos;
}

void yaml_to_json(const YAML::Node& n, std::string& out, bool redact) {
  if (redact) {
    out += "\"[redacted]\"";
    return;
  }
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      out += "{";
      bool first = true;
      for (const auto& kv : n) {
        if (!first) out += ",";
        first = false;
        std::string key = kv.first.as<std::string>();
        out += "\"";
        observe::json_escape(key, out);
        out += "\":";
        yaml_to_json(kv.second, out, looks_secret(key));
      }
      out += "}";
      break;
    }
    case YAML::NodeType::Sequence: {
      out += "[";
      for (size_t i = 0; i < n.size(); ++i) {
        if (i) out += ",";
        yaml_to_json(n[i], out, false);
      }
      out += "]";
      break;
    }
    case YAML::NodeType::Scalar: {
      std::string v = n.Scalar();
      // user:password@ inside URLs is a secret too.
      size_t scheme = v.find("://");
      size_t at = v.find('@');
      if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
        size_t colon = v.find(':', scheme + 3);
        if (colon != std::string::npos && colon < at) {
          v.replace(colon + 1, at - colon - 1, "[redacted]");
        }
      }
      bool plain = n.Tag() != "!";
      bool number = plain && !v.empty() &&
                    v.find_first_not_of("0123456789") == std::string::npos && v.size() < 16;
      if (number || (plain && (v == "true" || v == "false"))) {
        out += v;
      } else {
        out += "\"";
        observe::json_escape(v, out);
        out += "\"";
      }
      break;
    }
    default:
      out += "null";
  }
}

}  // namespace

std::string Server::config_json() {
  std::string out = "{\"version\":" + std::to_string(version_) + ",\"file\":\"";
  observe::json_escape(config_path_, out);
  out += "\",\"workers\":" + std::to_string(nworkers_) + ",\"listeners\":[";
  for (size_t i = 0; i < listeners_.size(); ++i) {
    if (i) out += ",";
    out += "{\"name\":\"" + listeners_[i].name + "\",\"address\":\"" +
           listeners_[i].bound.text() + "\"}";
  }
  out += "],\"config\":";
  yaml_to_json(current_->config->raw, out, false);
  out += "}\n";
  return out;
}

std::string Server::clusters_json() {
  uint64_t now = core::monotonic_ms();
  std::string out = "{\"clusters\":[";
  bool first = true;
  for (const auto& [name, c] : current_->clusters) {
    if (!first) out += ",";
    first = false;
    out += "{\"name\":\"" + name + "\",\"endpoints\":[";
    for (size_t i = 0; i < c->endpoints().size(); ++i) {
      const auto& e = *c->endpoints()[i];
      if (i) out += ",";
      uint64_t until = e.ejected_until_ms.load();
      out += "{\"address\":\"" + e.label + "\",\"weight\":" + std::to_string(e.weight) +
             ",\"healthy\":" + (e.hc_healthy.load() ? "true" : "false") +
             ",\"ejected\":" + (until > now ? "true" : "false") +
             ",\"ejected_for_ms\":" + std::to_string(until > now ? until - now : 0) +
             ",\"ejections\":" + std::to_string(e.ejection_count.load()) +
             ",\"active_requests\":" + std::to_string(e.active_requests->value()) + "}";
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

}  // namespace citadel::cli
