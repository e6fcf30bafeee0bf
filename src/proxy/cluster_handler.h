// ClusterHandler: the route target that proxies a request to a cluster (Envoy's router as the
// terminal filter, h2o's proxy handler).
//
// One per request, created in the request's arena by the route's ClusterHandlerFactory once the
// route's filters have passed the head on. It owns the upstream side of the exchange: endpoint
// choice through the worker's balancer, a connection from the endpoint's keep-alive pool, the
// upstream timers (connect, response, idle, retry backoff), retries within the cluster's budget,
// outlier reports, errors named by cause, and both bodies with backpressure. The stream
// (ActiveStream) keeps the client's side: the filter chain, the request id and trace context, the
// route timeout and the access log. Worker thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/buffer.h"
#include "core/timer_wheel.h"
#include "http/upstream.h"
#include "http/pipeline/handler.h"
#include "proxy/router.h"
#include "proxy/upstream_pool.h"

namespace citadel::proxy {

class Worker;
class WorkerCluster;
struct Endpoint;

class ClusterHandlerFactory final : public pipeline::HandlerFactory {
 public:
  // `route` owns this factory and outlives it.
  explicit ClusterHandlerFactory(const Route& route) : route_(route) {}
  pipeline::Handler* create(core::Arena& arena) const override;

 private:
  const Route& route_;
};

class ClusterHandler final : public pipeline::Handler,
                             public http::UpstreamCallbacks,
                             public PoolWaiter {
 public:
  explicit ClusterHandler(const Route& route);
  ~ClusterHandler() override;

  // pipeline::Handler
  void on_request_headers(pipeline::HandlerContext& ctx, bool end_stream) override;
  void on_request_data(pipeline::HandlerContext& ctx, std::string_view data,
                       bool end_stream) override;
  void on_request_trailers(pipeline::HandlerContext& ctx,
                           const http::HeaderMap& trailers) override;
  void on_tunnel_data(pipeline::HandlerContext& ctx, std::string_view data,
                      bool end_stream) override;
  void on_response_ready(pipeline::HandlerContext& ctx) override;
  void on_reset() override;

  // http::UpstreamCallbacks
  http::ResponseHead& response_head() override { return ctx_->response_head(); }
  core::Arena& arena() override { return ctx_->arena(); }
  void on_connected() override;
  void on_informational(const http::ResponseHead& head) override;
  void on_response_headers(bool end_stream) override;
  void on_response_data(std::string_view data, bool end_stream) override;
  void on_response_trailers(const http::HeaderMap& trailers) override;
  void on_upstream_write_ready() override;
  void on_failure(http::UpstreamFailure kind, std::string_view detail) override;

  // PoolWaiter: a connection for a request that waited at the cluster's max_connections.
  void on_pool_ready(http::UpstreamStream& stream) override;

 private:
  // How long a request waits for a connection at max_connections when the cluster's connect
  // timeout is off.
  static constexpr uint64_t kDefaultPoolWaitMs = 5000;
  enum class TimerMode : uint8_t { kNone, kPoolWait, kConnect, kResponse, kIdle, kBackoff };

  void compute_hash();
  // A 101 from the upstream names (in Upgrade) only protocols the client asked for.
  bool switch_asked_for(const http::ResponseHead& resp);
  // The upstream request: origin-form target, hop-by-hop fields gone, forwarding fields added.
  // False: the route's rewrite produced a path the upstream must not get (see rewrite_target).
  bool prepare_head();
  // One attempt: pick an endpoint, take a connection (or wait for one at the cluster's
  // limit), then start_exchange().
  void send_attempt();
  // Sends the head and any parked body on `conn`.
  void start_exchange(http::UpstreamStream& stream);
  void send_body(std::string_view data, bool end_stream);
  void finish_attempt(bool success);
  void end_active();
  // Schedules another attempt when the policy, the budget and the request allow it.
  bool try_retry(bool connect_failure);
  // Answers the client (502/503/504) or, when the response has started, resets it.
  void fail_request(int status, std::string_view body);
  // Detaches and closes the connection of an unfinished exchange.
  void release_upstream();
  void arm_timer(TimerMode mode, uint64_t ms);
  static void on_timer(void* self);
  void report_endpoint_failure();
  uint64_t now_us() const;

  const Route& route_;
  pipeline::HandlerContext* ctx_ = nullptr;
  Worker* worker_ = nullptr;
  WorkerCluster* wc_ = nullptr;
  Endpoint* ep_ = nullptr;
  http::UpstreamStream* conn_ = nullptr;  // the exchange with the upstream
  core::Timer timer_;
  TimerMode timer_mode_ = TimerMode::kNone;
  // Body that arrived while no connection could take it (between attempts).
  core::Buffer pending_;
  bool pending_end_ = false;
  http::HeaderMap trailers_;     // the request's trailers, sent with the end of the body
  std::string_view target_;      // the upstream request target
  uint64_t lb_hash_ = 0;
  uint64_t upstream_start_us_ = 0;
  uint32_t attempt_ = 0;
  bool has_hash_ = false;
  bool counted_retry_ = false;
  bool body_forwarded_ = false;  // some of the body went to an upstream: no replay
  bool request_sent_ = false;    // the whole request is in the connection's hands
  bool response_sent_ = false;   // the response head went to the stream
  bool upgraded_ = false;
  bool attempt_active_ = false;  // counted in the endpoint's active requests
  bool reset_ = false;           // the stream is gone, or a filter answered instead
  bool queued_ = false;          // waiting in the cluster's queue for a connection
  bool parked_ = false;          // the client's body is paused until a connection takes it
  bool idle_paused_ = false;     // the idle timer waits for a slow client to drain
};

}  // namespace citadel::proxy
