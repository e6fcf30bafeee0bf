// A worker: one thread, one event loop, its own SO_REUSEPORT listening sockets, and every
// connection it accepts for that connection's whole life. Workers share nothing mutable on the
// request path; the control thread talks to them only through EventLoop::post.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "http/date.h"
#include "http/client/http_client.h"
#include "http/http2/preface_sniffer.h"
#include "http/downstream_connection.h"
#include "http/http1/server_connection.h"
#include "http/pipeline/stream_info.h"
#include "http/transport/tls_transport.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "proxy/lb/load_balancer.h"
#include "proxy/snapshot.h"

namespace citadel::proxy {

class ActiveStream;
class WorkerCluster;

// Process-wide services a worker uses; owned by the server, outlive the workers.
struct WorkerServices {
  observe::Registry* metrics = nullptr;
  observe::ErrorLog* log = nullptr;
  observe::AccessLogWriter* access_log = nullptr;  // nullptr: access log off
  size_t workers = 1;  // how many workers share per-process limits
  core::BlockingPool* blocking = nullptr;  // work that must block (nullptr: none)
  observe::Counter* cx_total = nullptr;
  observe::Gauge* cx_active = nullptr;
  observe::Counter* protocol_errors = nullptr;
  observe::Counter* no_route = nullptr;
  // Times a listener stopped accepting: at its connection limit, out of file descriptors.
  observe::Counter* accept_paused_limit = nullptr;
  observe::Counter* accept_paused_fds = nullptr;
  observe::Counter* tls_handshake_errors = nullptr;
  http::client::ClientOptions http_client;  // each worker's HttpClient
};

// A snapshot as one worker holds it: counted without atomics by this worker's requests.
struct WorkerSnapshot {
  std::shared_ptr<const Snapshot> snap;
  uint32_t refs = 0;
};

class Worker final : public http::ConnectionOwner,
                     public http::TlsHandshakeOwner,
                     public http::http2::SniffOwner,
                     public http::StreamFactory,
                     public pipeline::WorkerContext {
 public:
  Worker(size_t index, WorkerServices services);
  ~Worker();

  // Control thread. Starts the thread and its loop.
  void start();
  // Control thread: publish a new snapshot. Requests in flight keep theirs.
  void publish(std::shared_ptr<const Snapshot> snap);
  // Control thread: listen on `fd` (already bound, listening, SO_REUSEPORT) as listener `name`.
  void add_listener(const std::string& name, int fd, bool merge_slashes);
  void remove_listener(const std::string& name);
  // Control thread: the listener `from` goes on under the name `to`, on the same socket, so a
  // reload that renames a listener resets none of the connections waiting in its accept queue.
  void rename_listener(const std::string& from, const std::string& to);
  // Control thread: stop accepting, close idle connections, close the rest after their current
  // response. `done` becomes true when no connection is left.
  void drain();
  bool drained() const { return drained_.load(std::memory_order_acquire); }
  // Control thread: stop the loop and join the thread.
  void stop();

  // pipeline::WorkerContext
  size_t index() const override { return index_; }
  core::EventLoop& loop() override { return loop_; }
  core::BlockingPool* blocking_pool() override { return services_.blocking; }
  http::client::HttpClient& http_client() override { return *http_client_; }
  observe::ErrorLog& log() override { return *services_.log; }
  core::BlockPool& blocks() { return blocks_; }
  const WorkerServices& services() const { return services_; }
  Rng& rng() { return rng_; }

  // Worker thread, for ActiveStream.
  WorkerSnapshot* acquire_snapshot() {
    ++current_->refs;
    return current_;
  }
  void release_snapshot(WorkerSnapshot* s);
  // This worker's state for `c`, created on first use. The worker keeps `c` alive while it has
  // state in it, and drops both once none of its snapshots references `c`.
  WorkerCluster& cluster_state(const std::shared_ptr<Cluster>& c);
  void recycle(ActiveStream* s);
  // A string for transient work on this worker's thread (its capacity stays): valid until the
  // next caller takes it, so copy what must last.
  std::string& scratch() { return scratch_; }
  // "2026-11-26T06:02:43.886Z" into `out` (at least 25 bytes); the date part is formatted once
  // per second per worker. Returns the length.
  size_t log_timestamp(char* out);

  // ConnectionOwner
  void on_connection_closed(http::DownstreamConnection& conn) override;
  bool draining() const override { return draining_; }
  // Counted, and written to the access log (no route, method or target: the request never
  // parsed; citadel.termination says why).
  void on_protocol_error(const http::ConnectionInfo* info, int status,
                         std::string_view reason) override;
  std::string_view http_date() override { return date_.now(); }
  // TlsHandshakeOwner
  void on_handshake_done(http::TlsHandshake& h) override;
  void on_handshake_failed(std::string_view why) override;
  // SniffOwner (h2c with prior knowledge on a plain listener with http2)
  void on_sniffed(http::http2::PrefaceSniffer& s, bool h2) override;
  // StreamFactory
  http::StreamHandler* new_stream(http::ServerStream& downstream) override;

 private:
  // Puts `conn` in `old`'s place in the connection list and starts it (see worker.cc).
  bool take_place(http::DownstreamConnection& old, http::DownstreamConnection* conn);
  class Listener;
  void accept_from(Listener& l);
  // The connection for a client just accepted on `l`: the codec is chosen here.
  http::DownstreamConnection* new_connection(int fd, const http::ConnectionInfo& info,
                                             Listener& l);
  static void on_accept_retry(void* listener);
  // Stops `l` accepting for good; it is freed once its last connection has closed.
  void retire_listener(std::unique_ptr<Listener> l);
  // Applies the current snapshot's settings and connection limit to `l`.
  void configure_listener(Listener& l);
  void retire_unused_clusters();
  void check_drained();

  size_t index_;
  WorkerServices services_;
  core::EventLoop loop_;
  core::BlockPool blocks_;
  // Created before the thread runs, destroyed after it stopped (before the loop's graveyard is
  // cleared: the connections it closes go there).
  std::unique_ptr<http::client::HttpClient> http_client_;
  Rng rng_;
  std::thread thread_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Listener>> retired_listeners_;  // with connections still open
  http::DownstreamConnection* connections_ = nullptr;  // intrusive list, every protocol
  size_t connection_count_ = 0;
  uint64_t next_connection_id_ = 1;
  WorkerSnapshot* current_ = nullptr;
  std::vector<WorkerSnapshot*> old_snapshots_;
  std::vector<std::shared_ptr<Cluster>> owned_cluster_state_;
  std::vector<ActiveStream*> free_streams_;
  bool draining_ = false;
  std::atomic<bool> drained_{false};
  http::DateCache date_;
  std::string scratch_;
  int64_t stamp_second_ = -1;
  char stamp_prefix_[24] = {0};  // "YYYY-MM-DDTHH:MM:SS"
};

}  // namespace citadel::proxy
