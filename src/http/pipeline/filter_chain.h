// FilterChain: runs one stream's filters in both directions and keeps the filter contract in
// every phase (see filter.h): continue, suspend and resume, collect the whole body, answer.
//
// The stream (proxy::ActiveStream) owns one chain per request. It feeds the request in from
// the codec (request_*), the response in from the target (response_*), and receives what has
// passed every filter through ChainOwner: the request to the target, the response to the
// client. Each direction is a pipeline of positions (the request runs filters 0..n-1, the
// response n-1..0, or fewer when a filter answered): at most one position is suspended at a
// time; what arrives meanwhile waits at the entrance (bounded, with the source paused once a
// little has queued) and passes every filter in order at the resume, so no filter is skipped.
// A filter collecting the body (kStopAndBuffer) keeps the data that reaches it until the body
// is complete, bounded by the limit.
//
// Re-entrancy: a filter may resume or answer from inside its own callback; a callback that ends
// the stream (an answer that completes the response) is detected and nothing of the chain is
// touched after it. Worker thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/arena.h"
#include "core/buffer.h"
#include "http/headers.h"
#include "http/message.h"
#include "http/pipeline/filter.h"

namespace citadel::pipeline {

struct ChainLimits {
  size_t request_buffer = 1 << 20;   // request body bytes the chain may hold (else 413)
  size_t response_buffer = 1 << 20;  // response body bytes the chain may hold (else 500)
  size_t queue_high = 64 * 1024;     // pause a source once this much waits at the entrance
};

// The stream side of the chain.
class ChainOwner {
 public:
  // The request has passed every filter: on to the target.
  virtual void target_headers(bool end_stream) = 0;
  virtual void target_data(std::string_view data, bool end_stream) = 0;
  virtual void target_trailers(const http::HeaderMap& trailers) = 0;
  // The response has passed every filter: on to the client.
  virtual void client_headers(http::ResponseHead& head, bool end_stream) = 0;
  virtual void client_data(std::string_view data, bool end_stream) = 0;
  virtual void client_trailers(const http::HeaderMap& trailers) = 0;
  virtual bool client_blocked() const = 0;
  // A filter answered or the chain gave up on the target's response: the target must stop
  // and answer nothing.
  virtual void abandon_target() = 0;
  // The chain cannot complete a response whose head the client has: reset the client.
  virtual void reset_client() = 0;
  // Flow control: the chain queues too much (or has room again) at a direction's entrance.
  virtual void pause_request_source(bool paused) = 0;
  virtual void pause_response_source(bool paused) = 0;
  // The head the chain fills for a local reply.
  virtual http::ResponseHead& local_head() = 0;
  // For a chain init()ed with route_after: the request head has passed those filters (the
  // listener's). Choose the target and append() its filters, or answer (local_reply); the
  // head then goes on through the appended filters to target_headers().
  virtual void route_request(bool end_stream) { (void)end_stream; }

  // For the filters' contexts.
  virtual http::RequestHead& request_head() = 0;
  virtual core::Arena& arena() = 0;
  virtual core::BlockPool& blocks() = 0;
  virtual WorkerContext& worker() = 0;
  virtual StreamHandle handle() = 0;
  virtual StreamInfo& info() = 0;
  virtual const http::ConnectionInfo& connection() const = 0;
  virtual std::string_view route_name() const = 0;

 protected:
  ~ChainOwner() = default;
};

class FilterChain {
 public:
  static constexpr size_t kMaxFilters = 32;

  FilterChain(ChainOwner& owner, core::BlockPool& blocks);
  ~FilterChain();
  FilterChain(const FilterChain&) = delete;
  FilterChain& operator=(const FilterChain&) = delete;

  // Creates filters in the owner's arena (at most kMaxFilters in all). `route_after`: these
  // are the listener's filters, and once the request head has passed them the owner routes it
  // (ChainOwner::route_request) and appends the route's; a response (an early answer, a 404)
  // passes the filters present by then.
  void init(const FilterFactory* const* factories, size_t n, const ChainLimits& limits,
            bool route_after = false);
  // From route_request() only: the route's filters join after the listener's, with the
  // route's limits.
  void append(const FilterFactory* const* factories, size_t n, const ChainLimits& limits);
  // Tells every filter that the stream is gone (once); their callbacks and completions do
  // nothing from then on.
  void reset();
  // Destroys the filters: the chain is empty and may be init()ed again.
  void destroy();

  // Request side, from the codec.
  void request_headers(bool end_stream);
  void request_data(std::string_view data, bool end_stream);
  void request_trailers(const http::HeaderMap& trailers);
  // Response side, from the target. The head must stay valid for the stream's life.
  void response_headers(http::ResponseHead& head, bool end_stream);
  void response_data(std::string_view data, bool end_stream);
  void response_trailers(const http::HeaderMap& trailers);
  // A local answer from the stream itself (no route, a target error, a timeout): every filter
  // sees it. Resets the client when its response has already started.
  // `extra`: one more header field (Allow, Location), copied by the codec during the call.
  void local_reply(int status, std::string_view body, std::string_view content_type,
                   const http::HeaderField* extra = nullptr);
  // The client drained: whoever streams the response (a filter that answered, or the target
  // through the owner) may go on; resumes a response source the chain paused.
  void response_ready();

  size_t size() const { return n_; }
  // The client has the response head.
  bool response_started() const { return resp_.headers_out; }
  // A filter answered (the target is abandoned, or was never started).
  bool answered() const { return answered_by_ != kNone; }
  // A position is suspended or collecting on either side: a filter waits for something.
  bool waiting() const;

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);
  class Slot;

  struct Side {
    Side(core::BlockPool& blocks, bool is_request)
        : request(is_request), held(&blocks), queue(&blocks), work(&blocks), scratch(&blocks) {}
    const bool request;
    size_t top = 0;          // positions this side runs through
    uint32_t gen = 0;        // bumped when the side restarts: pushes in progress stop
    // The head.
    http::ResponseHead* head = nullptr;  // response side: the head being pushed
    bool headers_end = false;  // the head is the whole message
    size_t headers_at = 0;     // a collecting filter holds the head at this position
    bool headers_held = false;
    bool headers_out = false;  // the head reached the sink
    bool ended_in = false;     // the end of the message has entered
    bool dropped = false;      // request side after an answer: the rest is ignored
    // A suspended position.
    bool stopped = false;
    size_t stop_pos = 0;
    bool in_call = false;
    size_t call_pos = 0;
    bool resume_pending = false;  // the called filter resumed from inside its callback
    bool pumping = false;
    // Work waiting, in this order: the head, a held piece, the trailers, then the entrance.
    bool headers_pending = false;
    size_t headers_from = 0;
    bool held_pending = false;
    size_t held_from = 0;
    bool held_end = false;
    core::Buffer held;
    bool trailers_pending = false;
    size_t trailers_from = 0;
    core::Buffer queue;
    bool queue_end = false;
    bool queue_trailers = false;
    http::HeaderMap trailers;  // strings in the owner's arena
    // Collecting positions (kStopAndBuffer), created in the arena on first use.
    core::Buffer** collect = nullptr;
    bool collecting[kMaxFilters] = {};
    bool source_paused = false;
    core::Buffer work;
    core::Buffer scratch;
  };

  // Position `pos` of `s` names which filter.
  size_t filter_at(const Side& s, size_t pos) const;
  size_t position_of(const Side& s, size_t filter) const;
  FilterStatus call_headers(Side& s, size_t pos, bool end);
  FilterStatus call_data(Side& s, size_t pos, Body& body, bool end);
  FilterStatus call_trailers(Side& s, size_t pos);
  // Run pending work of `s` until it stops or nothing is left.
  void pump(Side& s);
  void push_headers(Side& s, size_t from);
  void push_data(Side& s, Body& body, bool end, size_t from);
  void push_trailers(Side& s, size_t from);
  // Position `pos` starts collecting the body (kStopAndBuffer); returns its buffer.
  core::Buffer& start_collecting(Side& s, size_t pos);
  // The body is complete at the collecting position `pos`.
  void release_collected(Side& s, size_t pos, bool end);
  void stop(Side& s, size_t pos);
  void to_sink_headers(Side& s, bool end);
  void to_sink_data(Side& s, std::string_view data, bool end);
  void to_sink_trailers(Side& s);
  void enqueue(Side& s, std::string_view data, bool end);
  // A piece or the trailers entering a side (a source's call).
  void feed_data(Side& s, std::string_view data, bool end_stream);
  void feed_trailers(Side& s, const http::HeaderMap& trailers);
  bool over_limit(Side& s);
  void overflow(Side& s);
  void update_flow(Side& s);
  // Filter `filter` answers: the response restarts below it.
  void answer_from(size_t filter, http::ResponseHead& head, bool end_stream);
  void answer_data(size_t filter, std::string_view data, bool end_stream);
  void answer_trailers(size_t filter, const http::HeaderMap& trailers);
  void continue_side(Side& s, size_t filter);
  // Forgets everything a side holds; `notify`: resume a source the side had paused.
  void clear_side(Side& s, bool notify = true);
  size_t held_bytes(const Side& s) const;
  static bool collecting(const Side& s, size_t pos) { return s.collecting[pos]; }

  ChainOwner& owner_;
  core::BlockPool& blocks_;
  Filter* filters_[kMaxFilters] = {};
  // One context per filter position, for the chain's whole life (not in the request's arena):
  // a filter that calls its context after its stream ended or was recycled reaches a slot whose
  // stamp is stale, and nothing happens.
  std::unique_ptr<Slot[]> slots_;
  size_t n_ = 0;
  ChainLimits limits_;
  Side req_;
  Side resp_;
  size_t answered_by_ = kNone;  // the filter that answered (n_: the stream itself)
  bool reset_done_ = false;
  bool overflowed_ = false;  // the chain answered an overflow already
  bool route_pending_ = false;  // the head has not reached route_request() yet
  uint64_t life_ = 0;  // bumped by destroy(): a callback that ended the stream is detected
};

}  // namespace citadel::pipeline
