// Name resolution that never blocks a worker's loop: c-ares (only resolver.cc sees it) driven by
// the loop, its sockets registered with the loop and its retry timeouts on a loop timer, with a
// small cache that honours the answers' TTLs. /etc/hosts is read first, as c-ares does.
//
// One Resolver per event loop, used only on that loop's thread (the owner may destroy it after
// the loop stopped). Concurrent lookups of one name share one query.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/event_loop.h"
#include "core/timer_wheel.h"

// c-ares types, kept out of every includer.
struct ares_addrinfo;
struct ares_channeldata;

namespace citadel::http::client {

struct PendingLookup;

// One address a name resolved to, port not set.
struct ResolvedAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

struct ResolverOptions {
  // DNS servers as "ip:port" or "ip" ("[v6]:port" for IPv6); empty: the system's
  // (/etc/resolv.conf).
  std::vector<std::string> servers;
  uint32_t attempt_timeout_ms = 2000;  // per query attempt; c-ares backs off on retries
  uint32_t tries = 2;
  size_t cache_entries = 256;  // names kept; more evicts (expired ones first)
  uint32_t max_ttl_s = 3600;   // longer TTLs are cut to this
};

class Resolver;

// Waits for one lookup. Intrusive: lives in its owner (an HTTP client's exchange), which calls
// Resolver::cancel() before it goes.
class ResolveWaiter {
 public:
  // Exactly once per resolve() unless cancelled. `addresses` is non-empty on success and valid
  // during the call only; `error` names the cause otherwise ("NXDOMAIN: ...").
  virtual void on_resolved(const std::vector<ResolvedAddress>& addresses,
                           std::string_view error) = 0;

 protected:
  ~ResolveWaiter() = default;

 private:
  friend class Resolver;
  PendingLookup* lookup_ = nullptr;  // non-null while waiting
  ResolveWaiter* prev_ = nullptr;
  ResolveWaiter* next_ = nullptr;
};

class Resolver {
 public:
  Resolver(core::EventLoop& loop, const ResolverOptions& options);
  // Cancels every lookup; no waiter is called.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Resolves `host` (a name; IP literals are the caller's) for `waiter`. A cached answer, an
  // /etc/hosts hit or an immediate failure calls the waiter before resolve() returns; otherwise
  // it is called later from the loop.
  void resolve(const std::string& host, ResolveWaiter& waiter);
  // Stops waiting; no call follows. A no-op for a waiter that is not waiting.
  void cancel(ResolveWaiter& waiter);

  // For tests and metrics: names in the cache, lookups sent to c-ares.
  size_t cached() const { return cache_.size(); }
  uint64_t queries() const { return queries_; }

 private:
  class Socket;
  struct CacheEntry {
    std::vector<ResolvedAddress> addresses;
    uint64_t expires_ms = 0;
  };
  static void on_sock_state(void* self, int fd, int readable, int writable);
  static void on_ares_result(void* arg, int status, int timeouts, ares_addrinfo* res);
  static void on_timer(void* self);
  void sock_state(int fd, bool readable, bool writable);
  void finish(PendingLookup* lookup, int status, ares_addrinfo* res);
  void store(const std::string& host, const std::vector<ResolvedAddress>& addresses,
             uint32_t ttl_s);
  void rearm();
  void process_fd(int read_fd, int write_fd);

  core::EventLoop& loop_;
  ResolverOptions options_;
  ares_channeldata* channel_ = nullptr;
  std::string init_error_;  // why there is no channel
  std::vector<Socket*> sockets_;
  std::unordered_map<std::string, std::unique_ptr<PendingLookup>> lookups_;
  std::unordered_map<std::string, CacheEntry> cache_;
  core::Timer timer_;
  uint64_t queries_ = 0;
  bool destroying_ = false;
};

}  // namespace citadel::http::client
