// ActiveStream: one request's life in the pipeline, from head to log line.
//
// Created by the worker for each request a codec reports (recycled through a per-worker free
// list), it picks the route on the snapshot current at the head, runs the route's filters, and
// answers with the route's target: a fixed response, a redirect, or an upstream cluster. For a
// cluster it drives the upstream attempt (endpoint choice, connection, timeouts, retries with
// budget and backoff, outlier reports) and streams both bodies with backpressure. Worker thread
// only.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/arena.h"
#include "core/buffer.h"
#include "core/timer_wheel.h"
#include "http/http1/client_connection.h"
#include "http/stream.h"
#include "proxy/filter.h"
#include "proxy/handler.h"
#include "proxy/router.h"

namespace citadel::proxy {

class Worker;
struct WorkerSnapshot;
class WorkerCluster;

class ActiveStream final : public http::StreamHandler,
                           public FilterContext,
                           public HandlerContext,
                           public http::http1::ClientCallbacks {
 public:
  explicit ActiveStream(Worker& worker);
  ~ActiveStream();
  // Prepares a recycled stream for a new request on `downstream`.
  void begin(http::ServerStream& downstream);

  // http::StreamHandler
  http::RequestHead& request_head() override { return req_; }
  core::Arena& arena() override { return arena_; }
  void on_request_headers(bool end_stream) override;
  void on_request_data(std::string_view data, bool end_stream) override;
  void on_request_trailers(const http::HeaderMap& trailers) override;
  void on_write_ready() override;
  void on_reset(std::string_view reason) override;
  void on_complete() override;

  // FilterContext
  void send_local_reply(int status, std::string_view body,
                        std::string_view content_type = "text/plain") override;
  void continue_request() override;
  core::EventLoop& loop() override;
  const http::ConnectionInfo& connection() const override { return ds_->connection(); }
  std::string_view route_name() const override;

  // HandlerContext (send_response_* may end the stream: the caller returns right after)
  const http::RequestHead& request() const override { return req_; }
  void send_response_headers(bool end_stream) override;
  void send_response_data(std::string_view data, bool end_stream) override;
  bool response_blocked() const override { return ds_ != nullptr && ds_->write_blocked(); }
  void pause_request_body() override { if (ds_ != nullptr) ds_->pause_request_body(); }
  void resume_request_body() override { if (ds_ != nullptr) ds_->resume_request_body(); }

  // http::http1::ClientCallbacks (and HandlerContext)
  http::ResponseHead& response_head() override { return resp_; }
  void on_connected() override;
  void on_informational(const http::ResponseHead& head) override;
  void on_response_headers(bool end_stream) override;
  void on_response_data(std::string_view data, bool end_stream) override;
  void on_response_trailers(const http::HeaderMap& trailers) override;
  void on_upstream_write_ready() override;
  void on_failure(http::http1::ClientFailure kind, std::string_view detail) override;

 private:
  static constexpr size_t kMaxFilters = 32;
  enum class TimerMode : uint8_t { kNone, kConnect, kResponse, kIdle, kBackoff };

  void run_request_filters();
  void start_target();
  void start_upstream();
  // True when the route allows every protocol the request's Upgrade fields name.
  bool upgrade_allowed() const;
  void prepare_upstream_head();
  // send_local_reply() with one more response field (Allow, Location).
  void reply_with_field(int status, std::string_view body, const http::HeaderField& field,
                        std::string_view content_type = "text/plain");
  void send_upstream_attempt();
  void forward_request_body(std::string_view data, bool end_stream);
  void finish_attempt(bool success);
  void end_active();
  // Schedules another attempt when the policy, the budget and the request allow it.
  bool try_retry(bool connect_failure);
  void upstream_error(int status, std::string_view body);
  // Detaches and closes the upstream connection of an unfinished exchange.
  void release_upstream();
  void arm_upstream_timer(TimerMode mode, uint64_t ms);
  static void on_upstream_timer(void* self);
  static void on_route_timer(void* self);
  void write_access_log();
  uint64_t now_us() const;

  Worker& worker_;
  http::ServerStream* ds_ = nullptr;
  http::RequestHead req_;
  http::ResponseHead resp_;
  core::Arena arena_;
  WorkerSnapshot* snap_ = nullptr;
  const Route* route_ = nullptr;
  Handler* handler_ = nullptr;  // in-process target, in arena_
  std::array<Filter*, kMaxFilters> filters_{};
  size_t nfilters_ = 0;
  size_t req_filter_next_ = 0;  // next request-headers filter to run
  bool filters_done_ = false;
  bool req_end_ = false;        // the downstream request has ended
  bool reset_ = false;          // the downstream is gone
  bool response_started_ = false;
  bool local_reply_ = false;
  uint64_t body_bytes_ = 0;
  core::Buffer pending_body_;   // body that arrived before the upstream was ready
  bool pending_end_ = false;
  // The request's trailer fields that may be forwarded (views into the downstream codec).
  http::HeaderMap req_trailers_;

  // Upstream attempt.
  WorkerCluster* wc_ = nullptr;
  Endpoint* ep_ = nullptr;
  http::http1::ClientConnection* conn_ = nullptr;
  uint32_t attempt_ = 0;
  bool counted_retry_ = false;
  bool body_forwarded_ = false;
  bool request_sent_ = false;   // the whole request is in the connection's hands
  bool upgraded_ = false;
  bool attempt_active_ = false;  // counted in the endpoint's active requests
  bool truncated_ = false;       // the upstream failed after the response head was sent
  TimerMode timer_mode_ = TimerMode::kNone;
  core::Timer upstream_timer_;
  core::Timer route_timer_;     // the route's whole-request `timeout`
  std::string target_;          // upstream request target, when built
  std::string_view upstream_target_;  // what is sent: target_ or the request's own target
  std::string norm_path_;
  std::string_view route_path_;  // the path routing matched: req_.path or norm_path_
  std::string scratch_;
  uint64_t lb_hash_ = 0;
  bool has_hash_ = false;

  // Log fields.
  uint64_t start_us_ = 0;
  uint64_t upstream_start_us_ = 0;
  uint64_t upstream_us_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  int status_ = 0;
  char request_id_[33] = {0};
  char trace_id_[33] = {0};
  std::string_view reset_reason_;
};

}  // namespace citadel::proxy
