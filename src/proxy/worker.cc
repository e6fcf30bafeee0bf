#include "proxy/worker.h"

#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "http/transport/socket_transport.h"
#include "http/http2/server_connection.h"
#include "http/transport/tls_transport.h"
#include "proxy/active_stream.h"
#include "proxy/upstream_pool.h"

namespace citadel::proxy {

// One listening socket of this worker, and the connections it accepted that are still open.
class Worker::Listener final : public core::IoHandler {
 public:
  Listener(Worker& w, std::string name, int fd, bool merge_slashes)
      : worker(w), name(std::move(name)), fd(fd), retry_timer(&Worker::on_accept_retry, this) {
    // The rest of the path options come from the snapshot (configure_listener); until then
    // they are the safe defaults.
    path_options.merge_slashes = merge_slashes;
  }
  ~Listener() {
    if (fd >= 0) ::close(fd);
  }
  void on_io(uint32_t) override { worker.accept_from(*this); }

  Worker& worker;
  std::string name;
  int fd;  // -1 once retired
  http::PathNormalizeOptions path_options;
  uint32_t id = 0;  // the name's id (Snapshot::listener_ids)
  std::shared_ptr<const http::ServerSettings> settings =
      std::make_shared<http::ServerSettings>();
  std::shared_ptr<const http::TlsServerContext> tls;  // nullptr: a plain listener
  bool http2 = false;
  uint64_t active = 0;           // open connections accepted here
  uint64_t max = 0;              // this worker's share of limits.connections; 0: none
  bool paused_limit = false;     // at `max`: resumes when a connection closes
  bool paused_fds = false;       // accept failed for lack of descriptors: retry_timer resumes
  core::Timer retry_timer;
};

namespace {

using TlsServerConnection =
    http::WithTransport<http::http1::ServerConnection, http::TlsTransport>;

// Request ids and trace ids must differ across workers, restarts and instances.
uint64_t random_seed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) {
    seed = static_cast<uint64_t>(core::monotonic_ms()) ^ (static_cast<uint64_t>(getpid()) << 32);
  }
  return seed;
}

}  // namespace

Worker::Worker(size_t index, WorkerServices services)
    : index_(index),
      services_(services),
      http_client_(std::make_unique<http::client::HttpClient>(loop_, blocks_,
                                                              services_.http_client)),
      rng_(random_seed()) {}

Worker::~Worker() {
  stop();
  // Close whatever is left (a drain that timed out); the loop's thread has ended, so this
  // thread now owns everything the loop owned.
  while (connections_ != nullptr) connections_->abort();
  listeners_.clear();
  retired_listeners_.clear();
  for (auto& c : owned_cluster_state_) {
    WorkerCluster*& slot = c->worker_slot(index_);
    delete slot;
    slot = nullptr;
  }
  owned_cluster_state_.clear();
  http_client_.reset();  // its requests are cancelled without callbacks
  loop_.run_completions();  // blocking jobs the pool cancelled at shutdown free themselves
  for (auto* s : free_streams_) delete s;
  delete current_;
  for (auto* s : old_snapshots_) delete s;
  loop_.clear_graveyard();  // before blocks_ goes: buffers return their blocks to it
}

void Worker::start() {
  thread_ = std::thread([this] {
    loop_.run();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  loop_.stop();
  thread_.join();
}

void Worker::publish(std::shared_ptr<const Snapshot> snap) {
  loop_.post([this, snap = std::move(snap)]() mutable {
    auto* ws = new WorkerSnapshot{std::move(snap), 0};
    WorkerSnapshot* old = current_;
    current_ = ws;
    if (old != nullptr) {
      if (old->refs == 0) {
        delete old;
      } else {
        old_snapshots_.push_back(old);
      }
    }
    // Listener settings and limits follow the snapshot.
    for (size_t i = 0; i < listeners_.size(); ++i) configure_listener(*listeners_[i]);
    retire_unused_clusters();
  });
}

void Worker::release_snapshot(WorkerSnapshot* s) {
  --s->refs;
  if (s == current_ || s->refs != 0) return;
  auto it = std::find(old_snapshots_.begin(), old_snapshots_.end(), s);
  if (it != old_snapshots_.end()) old_snapshots_.erase(it);
  delete s;
  retire_unused_clusters();
}

// Drops this worker's state for clusters that no live snapshot of this worker references.
void Worker::retire_unused_clusters() {
  auto referenced = [this](Cluster* c) {
    auto in = [c](const WorkerSnapshot* ws) {
      for (const auto& [_, cl] : ws->snap->clusters) {
        if (cl.get() == c) return true;
      }
      return false;
    };
    if (current_ != nullptr && in(current_)) return true;
    for (auto* ws : old_snapshots_) {
      if (in(ws)) return true;
    }
    return false;
  };
  for (size_t i = 0; i < owned_cluster_state_.size();) {
    Cluster* c = owned_cluster_state_[i].get();
    if (referenced(c)) {
      ++i;
      continue;
    }
    WorkerCluster*& slot = c->worker_slot(index_);
    delete slot;
    slot = nullptr;
    owned_cluster_state_.erase(owned_cluster_state_.begin() + static_cast<long>(i));
  }
}

WorkerCluster& Worker::cluster_state(const std::shared_ptr<Cluster>& c) {
  WorkerCluster*& slot = c->worker_slot(index_);
  if (slot == nullptr) {
    slot = new WorkerCluster(*c, loop_, blocks_, index_, services_.workers, rng_.next());
    owned_cluster_state_.push_back(c);
  }
  return *slot;
}

void Worker::add_listener(const std::string& name, int fd, bool merge_slashes) {
  loop_.post([this, name, fd, merge_slashes] {
    auto l = std::make_unique<Listener>(*this, name, fd, merge_slashes);
    if (draining_ || !loop_.add(fd, l.get(), EPOLLIN).ok()) return;
    listeners_.push_back(std::move(l));
    configure_listener(*listeners_.back());
    accept_from(*listeners_.back());
  });
}

void Worker::configure_listener(Listener& l) {
  if (current_ == nullptr) return;
  for (const auto& lr : current_->snap->listeners) {
    if (lr.name != l.name) continue;
    l.settings = std::make_shared<http::ServerSettings>(lr.settings);
    l.path_options = lr.path_options;
    l.tls = lr.tls;
    l.http2 = lr.http2;
    l.max = lr.max_connections_per_worker;
    l.id = lr.id;
  }
  if (l.paused_limit && (l.max == 0 || l.active < l.max)) {
    l.paused_limit = false;
    accept_from(l);
  }
}

void Worker::retire_listener(std::unique_ptr<Listener> l) {
  loop_.remove(l->fd);
  ::close(l->fd);
  l->fd = -1;
  loop_.timers().cancel(l->retry_timer);
  if (l->active != 0) retired_listeners_.push_back(std::move(l));
}

void Worker::on_accept_retry(void* arg) {
  auto* l = static_cast<Listener*>(arg);
  l->paused_fds = false;
  l->worker.accept_from(*l);
}

void Worker::remove_listener(const std::string& name) {
  loop_.post([this, name] {
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (listeners_[i]->name == name) {
        std::unique_ptr<Listener> l = std::move(listeners_[i]);
        listeners_.erase(listeners_.begin() + static_cast<long>(i));
        retire_listener(std::move(l));
        return;
      }
    }
  });
}

void Worker::rename_listener(const std::string& from, const std::string& to) {
  loop_.post([this, from, to] {
    for (auto& l : listeners_) {
      if (l->name == from) l->name = to;
    }
  });
}

void Worker::accept_from(Listener& l) {
  if (l.fd < 0 || l.paused_fds) return;
  // Bounded per wake-up so that one busy listener cannot starve established connections.
  for (int i = 0; i < 64; ++i) {
    if (l.max != 0 && l.active >= l.max) {
      // Further clients wait in the kernel's accept queue until a connection closes.
      if (!l.paused_limit) services_.accept_paused_limit->add(index_);
      l.paused_limit = true;
      return;
    }
    int fd = -1;
    http::ConnectionInfo info;
    auto accepted = http::accept_client(l.fd, fd, info);
    if (accepted != http::AcceptResult::kAccepted) {
      if (accepted == http::AcceptResult::kNoDescriptors) {
        // The client stays queued; edge-triggered epoll would not report it again, so try
        // again shortly rather than on the next arrival.
        int err = errno;
        l.paused_fds = true;
        services_.accept_paused_fds->add(index_);
        services_.log->log(observe::LogLevel::kError,
                           "listener %s: cannot accept (%s), %llu connections open on this "
                           "worker; trying again in %llums",
                           l.name.c_str(), std::strerror(err),
                           static_cast<unsigned long long>(connection_count_),
                           static_cast<unsigned long long>(http::kAcceptRetryMs));
        loop_.arm(l.retry_timer, http::kAcceptRetryMs);
      }
      return;  // EAGAIN, or an error that a later edge will retry
    }
    info.path_options = l.path_options;
    info.listener_id = l.id;
    info.id = (static_cast<uint64_t>(index_) << 48) | next_connection_id_++;
    http::DownstreamConnection* c = new_connection(fd, info, l);
    if (c == nullptr) continue;  // closed already (no memory for a TLS session)
    c->next = connections_;
    if (connections_ != nullptr) connections_->prev = c;
    connections_ = c;
    c->owner_tag = &l;
    ++l.active;
    ++connection_count_;
    services_.cx_total->add(index_);
    services_.cx_active->add(index_, 1);
    if (!c->start()) c->abort();
    if (i == 63) {
      // More may be waiting; edge-triggered epoll will not say so again. The listener may be
      // removed by a reload before this runs: look it up again.
      Listener* lp = &l;
      loop_.post([this, lp] {
        for (auto& each : listeners_) {
          if (each.get() == lp) accept_from(*lp);
        }
      });
    }
  }
}

http::DownstreamConnection* Worker::new_connection(int fd, const http::ConnectionInfo& info,
                                                   Listener& l) {
  if (l.tls == nullptr) {
    if (l.http2) {
      // The first bytes choose the codec: the HTTP/2 preface, or an HTTP/1 request line.
      return new http::http2::PrefaceSniffer(http::SocketTransport(fd), info, loop_, *this,
                                             *this, l.settings->header_timeout_ms);
    }
    return new http::http1::PlainServerConnection(http::SocketTransport(fd), info, l.settings,
                                                  loop_, blocks_, *this, *this);
  }
  // A TLS listener first runs the handshake (a DownstreamConnection of its own, in the list
  // meanwhile, bounded by the header timeout); on_handshake_done() then picks the codec by the
  // ALPN result and puts it in the handshake's place.
  SSL* ssl = l.tls->new_ssl();
  if (ssl == nullptr) {
    ::close(fd);
    return nullptr;
  }
  return new http::TlsHandshake(http::TlsTransport::server(fd, ssl), info, loop_, *this, *this,
                                l.settings->header_timeout_ms);
}

// Puts `conn` in `old`'s place in the connection list (the same listener, the same count),
// hands `old` to defer_delete and starts `conn` (aborted when it cannot run). False: aborted.
bool Worker::take_place(http::DownstreamConnection& old, http::DownstreamConnection* conn) {
  conn->prev = old.prev;
  conn->next = old.next;
  conn->owner_tag = old.owner_tag;
  if (old.prev != nullptr) old.prev->next = conn;
  else connections_ = conn;
  if (old.next != nullptr) old.next->prev = conn;
  old.prev = old.next = nullptr;
  old.owner_tag = nullptr;
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&old));
  if (!conn->start()) {
    conn->abort();
    return false;
  }
  return true;
}

void Worker::on_handshake_done(http::TlsHandshake& h) {
  // (owner_tag is the accepting listener, kept alive while it has connections.)
  auto* l = static_cast<Listener*>(h.owner_tag);
  if (h.info().alpn() == "acme-tls/1") {
    // A TLS-ALPN-01 validation: the handshake was the answer, no data follows (RFC 8737, 3).
    h.abort();
    return;
  }
  if (h.info().alpn() == "h2") {
    auto* conn = new http::http2::TlsServerConnection(h.take_transport(), h.info(), l->settings,
                                                      loop_, blocks_, *this, *this);
    // Its start() reads what OpenSSL may already hold decrypted.
    take_place(h, conn);
    return;
  }
  auto* conn = new TlsServerConnection(h.take_transport(), h.info(), l->settings, loop_, blocks_,
                                       *this, *this);
  if (!take_place(h, conn)) return;
  // The client's first request may already sit decrypted in OpenSSL's buffer, and no edge
  // would announce it.
  conn->on_io(EPOLLIN);
}

void Worker::on_sniffed(http::http2::PrefaceSniffer& s, bool h2) {
  auto* l = static_cast<Listener*>(s.owner_tag);
  if (h2) {
    take_place(s, new http::http2::PlainServerConnection(s.take_transport(), s.info(),
                                                         l->settings, loop_, blocks_, *this,
                                                         *this, s.bytes()));
    return;
  }
  auto* conn = new http::http1::PlainServerConnection(s.take_transport(), s.info(), l->settings,
                                                      loop_, blocks_, *this, *this);
  conn->preload(s.bytes());
  take_place(s, conn);
}

void Worker::on_handshake_failed(std::string_view why) {
  services_.tls_handshake_errors->add(index_);
  services_.log->log(observe::LogLevel::kDebug, "TLS handshake failed: %.*s",
                     static_cast<int>(why.size()), why.data());
}

void Worker::on_connection_closed(http::DownstreamConnection& c) {
  if (c.prev != nullptr) c.prev->next = c.next;
  else connections_ = c.next;
  if (c.next != nullptr) c.next->prev = c.prev;
  c.prev = c.next = nullptr;
  --connection_count_;
  if (auto* l = static_cast<Listener*>(c.owner_tag)) {
    c.owner_tag = nullptr;
    --l->active;
    if (l->fd < 0) {
      if (l->active == 0) {
        auto it = std::find_if(retired_listeners_.begin(), retired_listeners_.end(),
                               [l](const auto& r) { return r.get() == l; });
        if (it != retired_listeners_.end()) retired_listeners_.erase(it);
      }
    } else if (l->paused_limit && (l->max == 0 || l->active < l->max)) {
      // Accept from the loop, not from inside this connection's close path. The listener may
      // be retired before that runs: look it up again.
      l->paused_limit = false;
      loop_.post([this, l] {
        for (auto& each : listeners_) {
          if (each.get() == l) accept_from(*l);
        }
      });
    }
  }
  services_.cx_active->add(index_, -1);
  loop_.defer_delete(std::unique_ptr<core::Deferred>(&c));
  if (draining_) check_drained();
}

http::StreamHandler* Worker::new_stream(http::ServerStream& downstream) {
  ActiveStream* s;
  if (free_streams_.empty()) {
    s = new ActiveStream(*this);
  } else {
    s = free_streams_.back();
    free_streams_.pop_back();
  }
  s->begin(downstream);
  return s;
}

void Worker::recycle(ActiveStream* s) {
  // Kept for reuse: the list is bounded by this worker's peak of concurrent requests.
  free_streams_.push_back(s);
}

void Worker::on_protocol_error(const http::ConnectionInfo* info, int status,
                               std::string_view reason) {
  services_.protocol_errors->add(index_);
  if (info == nullptr || services_.access_log == nullptr) return;
  std::string& line = scratch_;
  line.clear();
  char when[32];
  size_t when_len = log_timestamp(when);
  line += "{\"@timestamp\":\"";
  line.append(when, when_len);
  line += "\",\"http.response.status_code\":";
  line += std::to_string(status);
  line += ",\"source.address\":\"";
  line += info->peer_ip;
  line += "\",\"event.outcome\":\"failure\",\"citadel.termination\":\"";
  observe::json_escape(reason, line);
  line += "\"}\n";
  services_.access_log->ring(index_).push(line);
}

size_t Worker::log_timestamp(char* out) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != stamp_second_) {
    stamp_second_ = ts.tv_sec;
    tm t;
    gmtime_r(&ts.tv_sec, &t);
    std::strftime(stamp_prefix_, sizeof stamp_prefix_, "%Y-%m-%dT%H:%M:%S", &t);
  }
  std::memcpy(out, stamp_prefix_, 19);
  unsigned ms = static_cast<unsigned>(ts.tv_nsec / 1'000'000);
  out[19] = '.';
  out[20] = static_cast<char>('0' + ms / 100);
  out[21] = static_cast<char>('0' + ms / 10 % 10);
  out[22] = static_cast<char>('0' + ms % 10);
  out[23] = 'Z';
  return 24;
}

void Worker::drain() {
  loop_.post([this] {
    draining_ = true;
    for (auto& l : listeners_) retire_listener(std::move(l));
    listeners_.clear();
    // close_when_idle() may close (and unlink) the connection: walk with a saved next.
    for (auto* c = connections_; c != nullptr;) {
      auto* next = c->next;
      c->close_when_idle();
      c = next;
    }
    check_drained();
  });
}

void Worker::check_drained() {
  if (connection_count_ == 0) drained_.store(true, std::memory_order_release);
}

}  // namespace citadel::proxy
