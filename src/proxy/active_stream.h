// ActiveStream: one request's life in the pipeline, from head to log line.
//
// Created by the worker for each request a codec reports (recycled through a per-worker free
// list), it picks the route on the snapshot current at the head, normalises what routing and
// the target will see (Host of an absolute-form target, the path, upgrades the route allows),
// stamps the request id and trace context, and runs the chain: codec <-> the route's filters
// (pipeline::FilterChain) <-> the route's target (a pipeline::Handler: a cluster through
// ClusterHandler, a fixed response, a redirect). It keeps the route timeout, the body limit, the
// metrics and the access log; everything about upstreams belongs to the ClusterHandler.
// Worker thread only.
#pragma once

#include <cstdint>
#include <string>

#include "core/arena.h"
#include "core/timer_wheel.h"
#include "http/pipeline/filter_chain.h"
#include "http/pipeline/handler.h"
#include "http/stream.h"
#include "proxy/router.h"

namespace citadel::proxy {

class Worker;
struct WorkerSnapshot;

class ActiveStream final : public http::StreamHandler,
                           public pipeline::ChainOwner,
                           public pipeline::HandlerContext,
                           public pipeline::HandleTarget {
 public:
  explicit ActiveStream(Worker& worker);
  ~ActiveStream();
  // Prepares a recycled stream for a new request on `downstream`; handles taken for the
  // previous request go stale.
  void begin(http::ServerStream& downstream);

  // http::StreamHandler (the codec)
  http::RequestHead& request_head() override { return req_; }
  core::Arena& arena() override { return arena_; }
  void on_request_headers(bool end_stream) override;
  void on_request_data(std::string_view data, bool end_stream) override;
  void on_request_trailers(const http::HeaderMap& trailers) override;
  void on_write_ready() override;
  void on_reset(std::string_view reason, int answered) override;
  void on_complete() override;

  // pipeline::ChainOwner (what passed the filters)
  void target_headers(bool end_stream) override;
  void target_data(std::string_view data, bool end_stream) override;
  void target_trailers(const http::HeaderMap& trailers) override;
  void client_headers(http::ResponseHead& head, bool end_stream) override;
  void client_data(std::string_view data, bool end_stream) override;
  void client_trailers(const http::HeaderMap& trailers) override;
  bool client_blocked() const override { return ds_ != nullptr && ds_->write_blocked(); }
  void abandon_target() override;
  void reset_client() override;
  void pause_request_source(bool paused) override;
  void pause_response_source(bool paused) override;
  http::ResponseHead& local_head() override { return resp_; }
  std::string_view route_name() const override;

  // pipeline::HandlerContext (the target), and the environment both contexts share
  http::RequestHead& request() override { return req_; }
  std::string_view route_path() const override { return route_path_; }
  http::ResponseHead& response_head() override { return resp_; }
  void send_informational(const http::ResponseHead& head) override;
  void send_response_headers(bool end_stream) override;
  void send_response_data(std::string_view data, bool end_stream) override;
  void send_response_trailers(const http::HeaderMap& trailers) override;
  void send_local_reply(int status, std::string_view body) override;
  void reset_stream() override;
  bool response_blocked() const override { return client_blocked() || response_paused_; }
  void pause_request_body() override { set_request_pause(kTargetPause, true); }
  void resume_request_body() override { set_request_pause(kTargetPause, false); }
  core::BlockPool& blocks() override;
  pipeline::WorkerContext& worker() override;
  pipeline::StreamHandle handle() override { return {this, generation()}; }
  pipeline::StreamInfo& info() override { return info_; }
  const http::ConnectionInfo& connection() const override { return ds_->connection(); }

 private:
  static constexpr uint8_t kChainPause = 1;   // the chain queues too much request body
  static constexpr uint8_t kTargetPause = 2;  // the target cannot take more

  // Answers before any filter runs (400, 404, 405, 413, a path redirect).
  void early_reply(int status, std::string_view body, const http::HeaderField* extra = nullptr);
  // ChainOwner: the head has passed the listener's filters.
  void route_request(bool end_stream) override;
  enum class RoutePath : uint8_t { kOk, kEscapedSlash, kRedirect };
  // Sets route_path_ from req_.path (normalised as the listener says).
  RoutePath prepare_route_path();
  bool upgrade_allowed() const;
  void stamp_request_id_and_trace();
  void set_request_pause(uint8_t reason, bool paused);
  static void on_route_timer(void* self);
  void write_access_log();
  uint64_t now_us() const;

  Worker& worker_;
  http::ServerStream* ds_ = nullptr;
  http::RequestHead req_;
  http::ResponseHead resp_;
  core::Arena arena_;
  pipeline::FilterChain chain_;
  pipeline::StreamInfo info_;
  WorkerSnapshot* snap_ = nullptr;
  const Route* route_ = nullptr;
  pipeline::Handler* handler_ = nullptr;  // the target, in arena_
  bool handler_reset_ = false;            // told on_reset(): it answers nothing more
  bool reset_ = false;                    // the downstream is gone
  bool response_started_ = false;
  bool upgraded_ = false;                 // a 101 went to the client: raw bytes both ways
  bool response_paused_ = false;          // the chain holds the target's response back
  bool request_ended_ = false;            // the client's request has ended
  uint8_t request_pauses_ = 0;            // kChainPause | kTargetPause
  uint64_t body_bytes_ = 0;
  static constexpr uint64_t kUncounted = ~uint64_t{0};
  uint64_t resp_left_ = kUncounted;       // body bytes the response head announced, still due
  core::Timer route_timer_;               // the route's whole-request `timeout`
  std::string norm_path_;
  std::string_view route_path_;           // the path the route matched
  std::string_view routed_path_;          // req_.path when route_path_ was made from it
  std::string_view refuse_;               // why the request gets a 400, found before routing
  RoutePath route_path_status_ = RoutePath::kOk;
  size_t listener_filters_ = 0;           // how many of the chain's filters are the listener's
  std::string scratch_;

  // Log fields.
  uint64_t start_us_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  int status_ = 0;
  char request_id_[33] = {0};
  char trace_id_[33] = {0};
};

}  // namespace citadel::proxy
