#include "http/client/resolver.h"

#include <ares.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace citadel::http::client {

// The waiters of one name's query, in arrival order. Owned by Resolver::lookups_ until c-ares
// answers (waiters that cancel leave it; the answer is still cached for the next caller).
struct PendingLookup {
  Resolver* resolver = nullptr;
  std::string host;
  ResolveWaiter* head = nullptr;
  ResolveWaiter* tail = nullptr;
};

// One socket c-ares opened, registered with the loop while c-ares wants it. Freed through the
// loop's graveyard: an event for it may still be queued in the current batch.
class Resolver::Socket final : public core::IoHandler,
                               public core::LoopTask,
                               public core::Deferred {
 public:
  Socket(Resolver& r, int fd) : resolver(&r), fd(fd) {}
  void on_io(uint32_t events) override {
    // Edge-triggered: c-ares may leave datagrams queued after one pass, and no new edge would
    // report them. Go on while the socket still holds data (bounded: a flood cannot pin the
    // loop here).
    for (int pass = 0; pass < 16 && resolver != nullptr; ++pass) {
      bool readable = (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0;
      bool writable = (events & EPOLLOUT) != 0 && want_write;
      if (!readable && !writable) return;
      resolver->process_fd(readable ? fd : ARES_SOCKET_BAD, writable ? fd : ARES_SOCKET_BAD);
      if (resolver == nullptr) return;  // c-ares closed it meanwhile
      char byte;
      if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) return;
      events = EPOLLIN;
    }
  }

  // c-ares wants to write (a TCP query queued) on a socket that may long be writable: with
  // edge-triggered epoll no new EPOLLOUT would come, so offer it the socket from a task.
  void run_task() override {
    if (resolver != nullptr && want_write) resolver->process_fd(ARES_SOCKET_BAD, fd);
  }

  Resolver* resolver;  // nullptr once c-ares let the socket go
  int fd;
  bool want_write = false;
};

namespace {

std::once_flag ares_init_once;

}  // namespace

Resolver::Resolver(core::EventLoop& loop, const ResolverOptions& options)
    : loop_(loop), options_(options), timer_(&Resolver::on_timer, this) {
  // Process-wide library state that c-ares wants initialised once (a no-op on Linux today, but
  // its contract); never cleaned up, as other channels may live on.
  std::call_once(ares_init_once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options opts{};
  opts.sock_state_cb = &Resolver::on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(options_.attempt_timeout_ms);
  opts.tries = static_cast<int>(options_.tries);
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  ares_channel ch = nullptr;
  int rc = ares_init_options(&ch, &opts, mask);
  if (rc != ARES_SUCCESS) {
    init_error_ = std::string("resolver unavailable: ") + ares_strerror(rc);
    return;
  }
  channel_ = ch;
  if (!options_.servers.empty()) {
    std::string csv;
    for (const auto& s : options_.servers) {
      if (!csv.empty()) csv += ',';
      csv += s;
    }
    rc = ares_set_servers_ports_csv(channel_, csv.c_str());
    if (rc != ARES_SUCCESS) {
      init_error_ = "resolver servers \"" + csv + "\": " + ares_strerror(rc);
      ares_destroy(channel_);
      channel_ = nullptr;
    }
  }
}

Resolver::~Resolver() {
  destroying_ = true;
  loop_.timers().cancel(timer_);
  // Calls on_ares_result with ARES_EDESTRUCTION for each query (ignored) and closes the sockets
  // through on_sock_state.
  if (channel_ != nullptr) ares_destroy(channel_);
  for (auto& [_, lookup] : lookups_) {
    for (ResolveWaiter* w = lookup->head; w != nullptr; w = w->next_) w->lookup_ = nullptr;
  }
  for (Socket* s : sockets_) {  // normally none left: c-ares reported each close
    s->resolver = nullptr;
    loop_.remove(s->fd);
    loop_.defer_delete(std::unique_ptr<core::Deferred>(s));
  }
}

void Resolver::resolve(const std::string& host, ResolveWaiter& waiter) {
  cancel(waiter);
  auto cached = cache_.find(host);
  if (cached != cache_.end()) {
    if (cached->second.expires_ms > loop_.now_ms()) {
      waiter.on_resolved(cached->second.addresses, {});
      return;
    }
    cache_.erase(cached);
  }
  if (channel_ == nullptr) {
    waiter.on_resolved({}, init_error_);
    return;
  }
  auto& slot = lookups_[host];
  bool start = slot == nullptr;
  if (start) {
    slot = std::make_unique<PendingLookup>();
    slot->resolver = this;
    slot->host = host;
  }
  PendingLookup* lookup = slot.get();
  waiter.lookup_ = lookup;
  waiter.prev_ = lookup->tail;
  waiter.next_ = nullptr;
  if (lookup->tail != nullptr) {
    lookup->tail->next_ = &waiter;
  } else {
    lookup->head = &waiter;
  }
  lookup->tail = &waiter;
  if (!start) return;
  ++queries_;
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  // The hosts file is $CARES_HOSTS when set (tests), else /etc/hosts.
  hints.ai_flags = ARES_AI_ENVHOSTS;
  // May answer at once (/etc/hosts, a malformed name): on_ares_result then runs in here.
  ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &Resolver::on_ares_result, lookup);
  rearm();
}

void Resolver::cancel(ResolveWaiter& w) {
  PendingLookup* l = w.lookup_;
  if (l == nullptr) return;
  if (w.prev_ != nullptr) {
    w.prev_->next_ = w.next_;
  } else {
    l->head = w.next_;
  }
  if (w.next_ != nullptr) {
    w.next_->prev_ = w.prev_;
  } else {
    l->tail = w.prev_;
  }
  w.prev_ = w.next_ = nullptr;
  w.lookup_ = nullptr;
}

void Resolver::on_ares_result(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  auto* lookup = static_cast<PendingLookup*>(arg);
  if (status == ARES_EDESTRUCTION || lookup->resolver->destroying_) {
    if (res != nullptr) ares_freeaddrinfo(res);
    return;  // the resolver is going: nobody is told
  }
  lookup->resolver->finish(lookup, status, res);
}

void Resolver::finish(PendingLookup* lookup, int status, ares_addrinfo* res) {
  // Own the lookup for the rest of this call: waiters may start new lookups of the same name
  // (a fresh entry) or cancel each other.
  auto it = lookups_.find(lookup->host);
  std::unique_ptr<PendingLookup> owned;
  if (it != lookups_.end() && it->second.get() == lookup) {
    owned = std::move(it->second);
    lookups_.erase(it);
  }
  std::vector<ResolvedAddress> addresses;
  uint32_t ttl = UINT32_MAX;
  std::string error;
  if (status == ARES_SUCCESS && res != nullptr) {
    for (ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
      if (n->ai_addr == nullptr || n->ai_addrlen > sizeof(sockaddr_storage)) continue;
      if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
      ResolvedAddress a;
      std::memcpy(&a.addr, n->ai_addr, n->ai_addrlen);
      a.len = static_cast<socklen_t>(n->ai_addrlen);
      addresses.push_back(a);
      ttl = std::min(ttl, static_cast<uint32_t>(std::max(n->ai_ttl, 0)));
    }
    if (addresses.empty()) error = "no addresses";
  } else {
    error = ares_strerror(status);
  }
  if (res != nullptr) ares_freeaddrinfo(res);
  if (error.empty()) store(lookup->host, addresses, std::min(ttl, options_.max_ttl_s));
  while (ResolveWaiter* w = lookup->head) {
    cancel(*w);
    w->on_resolved(addresses, error);
  }
}

void Resolver::store(const std::string& host, const std::vector<ResolvedAddress>& addresses,
                     uint32_t ttl_s) {
  // A zero TTL (the answer must not be cached; /etc/hosts answers carry none) is not stored.
  if (ttl_s == 0 || options_.cache_entries == 0) return;
  uint64_t now = loop_.now_ms();
  if (cache_.size() >= options_.cache_entries) {
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second.expires_ms <= now ? cache_.erase(it) : std::next(it);
    }
    // Still full: any entry goes (a bounded cache matters more than which one).
    if (cache_.size() >= options_.cache_entries) cache_.erase(cache_.begin());
  }
  cache_[host] = CacheEntry{addresses, now + static_cast<uint64_t>(ttl_s) * 1000};
}

void Resolver::on_sock_state(void* self, int fd, int readable, int writable) {
  static_cast<Resolver*>(self)->sock_state(fd, readable != 0, writable != 0);
}

void Resolver::sock_state(int fd, bool readable, bool writable) {
  auto it = std::find_if(sockets_.begin(), sockets_.end(), [fd](Socket* s) { return s->fd == fd; });
  if (!readable && !writable) {
    if (it == sockets_.end()) return;
    Socket* s = *it;
    sockets_.erase(it);
    s->resolver = nullptr;
    loop_.remove(fd);
    loop_.defer_delete(std::unique_ptr<core::Deferred>(s));
    return;
  }
  if (it != sockets_.end()) {
    Socket* s = *it;
    if (writable && !s->want_write) loop_.schedule(s);
    s->want_write = writable;
    return;
  }
  auto* s = new Socket(*this, fd);
  s->want_write = writable;
  if (!loop_.add(fd, s, EPOLLIN | EPOLLOUT | EPOLLRDHUP).ok()) {
    // The query on this socket times out through ares_timeout(); nothing else to do.
    delete s;
    return;
  }
  sockets_.push_back(s);
}

void Resolver::process_fd(int read_fd, int write_fd) {
  ares_process_fd(channel_, read_fd, write_fd);
  rearm();
}

void Resolver::on_timer(void* self) {
  auto* r = static_cast<Resolver*>(self);
  // Retries and timeouts: c-ares checks its deadlines on any call.
  r->process_fd(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

void Resolver::rearm() {
  if (channel_ == nullptr || destroying_) return;
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    loop_.timers().cancel(timer_);
    return;
  }
  uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
  // Rounded up: a timer that fires just before c-ares' deadline would only re-arm.
  loop_.arm(timer_, ms + 1);
}

}  // namespace citadel::http::client
