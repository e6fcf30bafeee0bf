#include "http/pipeline/filter_chain.h"

#include <new>

namespace citadel::pipeline {

// The context of one filter in one stream: forwards to the chain with the filter's index.
class FilterChain::Slot final : public FilterContext {
 public:
  void bind(FilterChain* chain, size_t index, uint64_t life) {
    chain_ = chain;
    index_ = index;
    life_ = life;
  }
  // False for a context kept past its stream: every call is then ignored.
  bool live() const { return chain_ != nullptr && chain_->life_ == life_; }

  void continue_request() override {
    if (live()) chain_->continue_side(chain_->req_, index_);
  }
  void continue_response() override {
    if (live()) chain_->continue_side(chain_->resp_, index_);
  }
  void send_local_reply(int status, std::string_view body,
                        std::string_view content_type) override {
    if (!live()) return;
    FilterChain& chain = *chain_;
    http::ResponseHead& head = chain.owner_.local_head();
    head.reset();
    head.status = status;
    if (!body.empty()) head.headers.add("Content-Type", chain.owner_.arena().copy(content_type));
    head.framing = body.empty() ? http::BodyFraming::kNone : http::BodyFraming::kContentLength;
    head.content_length = body.size();
    const uint64_t life = chain.life_;
    chain.answer_from(index_, head, body.empty());
    if (!body.empty() && life == chain.life_) chain.answer_data(index_, body, true);
  }
  void send_response_headers(http::ResponseHead& head, bool end_stream) override {
    if (live()) chain_->answer_from(index_, head, end_stream);
  }
  void send_response_data(std::string_view data, bool end_stream) override {
    if (live()) chain_->answer_data(index_, data, end_stream);
  }
  void send_response_trailers(const http::HeaderMap& trailers) override {
    if (live()) chain_->answer_trailers(index_, trailers);
  }
  bool response_blocked() const override {
    return live() && (chain_->owner_.client_blocked() || chain_->resp_.source_paused);
  }
  // The environment of a live stream (a filter asks for these only while it runs).
  core::Arena& arena() override { return chain_->owner_.arena(); }
  WorkerContext& worker() override { return chain_->owner_.worker(); }
  StreamHandle handle() override { return chain_->owner_.handle(); }
  StreamInfo& info() override { return chain_->owner_.info(); }
  const http::ConnectionInfo& connection() const override { return chain_->owner_.connection(); }
  std::string_view route_name() const override { return chain_->owner_.route_name(); }

 private:
  FilterChain* chain_ = nullptr;
  size_t index_ = 0;
  uint64_t life_ = 0;
};

FilterChain::FilterChain(ChainOwner& owner, core::BlockPool& blocks)
    : owner_(owner),
      blocks_(blocks),
      slots_(new Slot[kMaxFilters]),
      req_(blocks, true),
      resp_(blocks, false) {}

FilterChain::~FilterChain() { destroy(); }

void FilterChain::init(const FilterFactory* const* factories, size_t n,
                       const ChainLimits& limits, bool route_after) {
  destroy();
  route_pending_ = route_after;
  limits_ = limits;
  if (n > kMaxFilters) n = kMaxFilters;
  core::Arena& arena = owner_.arena();
  for (size_t i = 0; i < n; ++i) {
    slots_[i].bind(this, i, life_);
    filters_[i] = factories[i]->create(arena);
    n_ = i + 1;
  }
  req_.top = n_;
  resp_.top = n_;
}

void FilterChain::append(const FilterFactory* const* factories, size_t n,
                         const ChainLimits& limits) {
  // Only while the head is being routed: no response has started through fewer filters.
  if (resp_.headers_out || answered_by_ != kNone || resp_.head != nullptr) return;
  limits_ = limits;
  core::Arena& arena = owner_.arena();
  for (size_t i = 0; i < n && n_ < kMaxFilters; ++i) {
    slots_[n_].bind(this, n_, life_);
    filters_[n_] = factories[i]->create(arena);
    ++n_;
  }
  req_.top = n_;
  resp_.top = n_;
}

void FilterChain::reset() {
  if (reset_done_) return;
  reset_done_ = true;
  ++life_;  // pushes in progress stop
  for (size_t i = 0; i < n_; ++i) filters_[i]->on_reset();
}

void FilterChain::destroy() {
  ++life_;
  for (size_t i = 0; i < n_; ++i) filters_[i]->~Filter();
  // The slots stay (bound again by the next init()); their stamps are stale from here.
  for (Side* s : {&req_, &resp_}) {
    clear_side(*s, false);  // the stream is done: nobody to resume
    if (s->collect != nullptr) {
      for (size_t i = 0; i < n_; ++i) {
        if (s->collect[i] != nullptr) s->collect[i]->~Buffer();
      }
      s->collect = nullptr;
    }
    s->held.release();
    s->queue.release();
    s->work.release();
    s->scratch.release();
    s->trailers.clear();
    s->source_paused = false;
  }
  n_ = 0;
  answered_by_ = kNone;
  reset_done_ = false;
  overflowed_ = false;
  route_pending_ = false;
}

void FilterChain::clear_side(Side& s, bool notify) {
  ++s.gen;
  if (s.source_paused && notify) {
    // What paused the source is gone with the side: let it flow again.
    s.source_paused = false;
    if (s.request) owner_.pause_request_source(false);
    else owner_.pause_response_source(false);
  }
  s.head = nullptr;
  s.headers_end = s.headers_held = s.headers_out = s.ended_in = s.dropped = false;
  s.headers_at = 0;
  s.stopped = s.in_call = s.resume_pending = s.pumping = false;
  s.stop_pos = s.call_pos = 0;
  s.headers_pending = s.held_pending = s.trailers_pending = false;
  s.headers_from = s.held_from = s.trailers_from = 0;
  s.held_end = s.queue_end = s.queue_trailers = false;
  s.held.clear();
  s.queue.clear();
  s.work.clear();
  // Only positions of the current filters can collect (a stream without filters: nothing).
  for (size_t i = 0; i < n_; ++i) {
    if (s.collecting[i] && s.collect != nullptr && s.collect[i] != nullptr) s.collect[i]->clear();
    s.collecting[i] = false;
  }
}

size_t FilterChain::filter_at(const Side& s, size_t pos) const {
  return s.request ? pos : s.top - 1 - pos;
}

size_t FilterChain::position_of(const Side& s, size_t filter) const {
  if (filter >= s.top) return kNone;
  return s.request ? filter : s.top - 1 - filter;
}

FilterStatus FilterChain::call_headers(Side& s, size_t pos, bool end) {
  const size_t f = filter_at(s, pos);
  s.in_call = true;
  s.call_pos = pos;
  s.resume_pending = false;
  FilterStatus st = s.request ? filters_[f]->on_request_headers(slots_[f], owner_.request_head(), end)
                              : filters_[f]->on_response_headers(slots_[f], *s.head, end);
  s.in_call = false;
  if (st == FilterStatus::kStop && s.resume_pending) st = FilterStatus::kContinue;
  return st;
}

FilterStatus FilterChain::call_data(Side& s, size_t pos, Body& body, bool end) {
  const size_t f = filter_at(s, pos);
  s.in_call = true;
  s.call_pos = pos;
  s.resume_pending = false;
  FilterStatus st = s.request ? filters_[f]->on_request_data(slots_[f], body, end)
                              : filters_[f]->on_response_data(slots_[f], body, end);
  s.in_call = false;
  if (st == FilterStatus::kStop && s.resume_pending) st = FilterStatus::kContinue;
  return st;
}

FilterStatus FilterChain::call_trailers(Side& s, size_t pos) {
  const size_t f = filter_at(s, pos);
  s.in_call = true;
  s.call_pos = pos;
  s.resume_pending = false;
  FilterStatus st = s.request ? filters_[f]->on_request_trailers(slots_[f], s.trailers)
                              : filters_[f]->on_response_trailers(slots_[f], s.trailers);
  s.in_call = false;
  if (st == FilterStatus::kStop && s.resume_pending) st = FilterStatus::kContinue;
  return st;
}

void FilterChain::stop(Side& s, size_t pos) {
  s.stopped = true;
  s.stop_pos = pos;
}

core::Buffer& FilterChain::start_collecting(Side& s, size_t pos) {
  // The buffers live in the request's arena (their blocks in the worker's pool) and are
  // released by destroy().
  if (s.collect == nullptr) {
    s.collect = static_cast<core::Buffer**>(
        owner_.arena().allocate_aligned(sizeof(core::Buffer*) * kMaxFilters,
                                        alignof(core::Buffer*)));
    // Room for every position: the route's filters may join after this (append()).
    for (size_t i = 0; i < kMaxFilters; ++i) s.collect[i] = nullptr;
  }
  if (s.collect[pos] == nullptr) s.collect[pos] = arena_new<core::Buffer>(owner_.arena(), &blocks_);
  s.collecting[pos] = true;
  return *s.collect[pos];
}

void FilterChain::push_headers(Side& s, size_t from) {
  const uint64_t life = life_;
  const uint32_t gen = s.gen;
  const bool end = s.headers_end;
  for (size_t pos = from; pos < s.top; ++pos) {
    FilterStatus st = call_headers(s, pos, end);
    if (life != life_ || gen != s.gen) return;
    if (st == FilterStatus::kContinue || (st == FilterStatus::kStopAndBuffer && end)) continue;
    if (st == FilterStatus::kStopAndBuffer) {
      // The head waits here while the body is collected for this filter.
      start_collecting(s, pos);
      s.headers_held = true;
      s.headers_at = pos;
      return;
    }
    // kStop: the head continues after this position at the resume.
    s.headers_pending = true;
    s.headers_from = pos + 1;
    stop(s, pos);
    return;
  }
  if (s.request && route_pending_) {
    // The head has passed the listener's filters: the owner routes it and appends the route's
    // filters (or answers: 404, a redirect), and the head goes on through them.
    route_pending_ = false;
    const size_t before = s.top;
    owner_.route_request(end);
    if (life != life_ || gen != s.gen || answered_by_ != kNone || s.dropped) return;
    if (s.top > before) {
      push_headers(s, before);
      return;
    }
  }
  to_sink_headers(s, end);
}

void FilterChain::push_data(Side& s, Body& body, bool end, size_t from) {
  const uint64_t life = life_;
  const uint32_t gen = s.gen;
  for (size_t pos = from; pos < s.top; ++pos) {
    if (collecting(s, pos)) {
      s.collect[pos]->append(body.view());
      if (over_limit(s)) {
        overflow(s);
        return;
      }
      if (end) release_collected(s, pos, true);
      return;
    }
    FilterStatus st = call_data(s, pos, body, end);
    if (life != life_ || gen != s.gen) return;
    if (st == FilterStatus::kContinue || (st == FilterStatus::kStopAndBuffer && end)) continue;
    if (st == FilterStatus::kStopAndBuffer) {
      start_collecting(s, pos).append(body.view());
      if (over_limit(s)) overflow(s);
      return;
    }
    // kStop: this piece waits here and goes on after this position at the resume.
    s.held.clear();
    s.held.append(body.view());
    s.held_pending = true;
    s.held_from = pos + 1;
    s.held_end = end;
    stop(s, pos);
    return;
  }
  // A filter that held a whole piece back leaves nothing to pass on: say nothing rather than
  // an empty non-final piece.
  if (body.empty() && !end) return;
  to_sink_data(s, body.view(), end);
}

void FilterChain::release_collected(Side& s, size_t pos, bool end) {
  s.collecting[pos] = false;
  const uint64_t life = life_;
  const uint32_t gen = s.gen;
  core::Buffer& collected = *s.collect[pos];
  Body body(s.scratch);
  body.adopt(collected);
  FilterStatus st = call_data(s, pos, body, end);
  if (life != life_ || gen != s.gen) return;
  // The whole body goes on after this position: behind the head when it waited here too.
  s.held.clear();
  s.held.append(body.view());
  collected.clear();
  s.held_pending = true;
  s.held_from = pos + 1;
  s.held_end = end;
  if (s.headers_held && s.headers_at == pos) {
    s.headers_held = false;
    s.headers_pending = true;
    s.headers_from = pos + 1;
  }
  if (st == FilterStatus::kStop) stop(s, pos);
}

void FilterChain::push_trailers(Side& s, size_t from) {
  const uint64_t life = life_;
  const uint32_t gen = s.gen;
  for (size_t pos = from; pos < s.top; ++pos) {
    if (collecting(s, pos)) {
      // The body is complete: the collecting filter gets it, then the trailers.
      release_collected(s, pos, false);
      if (life != life_ || gen != s.gen) return;
      s.trailers_pending = true;
      s.trailers_from = pos;
      return;
    }
    FilterStatus st = call_trailers(s, pos);
    if (life != life_ || gen != s.gen) return;
    if (st == FilterStatus::kStop) {
      s.trailers_pending = true;
      s.trailers_from = pos + 1;
      stop(s, pos);
      return;
    }
  }
  to_sink_trailers(s);
}

void FilterChain::pump(Side& s) {
  if (s.pumping) return;  // the pump already running picks the new work up
  const uint64_t life = life_;
  const uint32_t gen = s.gen;
  s.pumping = true;
  while (!s.stopped) {
    if (s.headers_pending) {
      s.headers_pending = false;
      push_headers(s, s.headers_from);
    } else if (s.held_pending) {
      s.held_pending = false;
      s.work.swap(s.held);
      s.held.clear();  // the previous batch: nothing held any more
      Body body(s.scratch);
      body.adopt(s.work);
      push_data(s, body, s.held_end, s.held_from);
    } else if (s.trailers_pending) {
      s.trailers_pending = false;
      push_trailers(s, s.trailers_from);
    } else if (!s.queue.empty() || s.queue_end) {
      const bool end = s.queue_end;
      s.queue_end = false;
      s.work.swap(s.queue);
      s.queue.clear();
      Body body(s.scratch);
      body.adopt(s.work);
      push_data(s, body, end, 0);
    } else if (s.queue_trailers) {
      s.queue_trailers = false;
      push_trailers(s, 0);
    } else {
      break;
    }
    if (life != life_ || gen != s.gen) return;  // the stream ended or the side restarted
  }
  s.pumping = false;
  update_flow(s);
}

void FilterChain::to_sink_headers(Side& s, bool end) {
  s.headers_out = true;
  if (s.request) owner_.target_headers(end);
  else owner_.client_headers(*s.head, end);
}

void FilterChain::to_sink_data(Side& s, std::string_view data, bool end) {
  if (s.request) owner_.target_data(data, end);
  else owner_.client_data(data, end);
}

void FilterChain::to_sink_trailers(Side& s) {
  if (s.request) owner_.target_trailers(s.trailers);
  else owner_.client_trailers(s.trailers);
}

void FilterChain::enqueue(Side& s, std::string_view data, bool end) {
  s.queue.append(data);
  if (end) s.queue_end = true;
}

size_t FilterChain::held_bytes(const Side& s) const {
  size_t n = s.held.size() + s.queue.size();
  for (size_t i = 0; i < n_ && s.collect != nullptr; ++i) {
    if (s.collecting[i]) n += s.collect[i]->size();
  }
  return n;
}

bool FilterChain::over_limit(Side& s) {
  return held_bytes(s) > (s.request ? limits_.request_buffer : limits_.response_buffer);
}

void FilterChain::overflow(Side& s) {
  // The chain's own answer overflowing too (a filter that collects every response) cannot be
  // answered again.
  if (resp_.headers_out || overflowed_) {
    owner_.reset_client();
    return;
  }
  overflowed_ = true;
  owner_.abandon_target();
  if (s.request) local_reply(413, "request body too large\n", "text/plain");
  else local_reply(500, "response too large to buffer\n", "text/plain");
}

void FilterChain::update_flow(Side& s) {
  const size_t queued = s.queue.size();
  if (!s.source_paused && queued > limits_.queue_high) {
    s.source_paused = true;
    if (s.request) owner_.pause_request_source(true);
    else owner_.pause_response_source(true);
  } else if (s.source_paused && queued <= limits_.queue_high / 2) {
    s.source_paused = false;
    if (s.request) {
      owner_.pause_request_source(false);
    } else {
      owner_.pause_response_source(false);
      // A filter streaming its own answer waits for this as a handler does (the owner wakes
      // only the handler, which an answer has abandoned).
      if (answered_by_ < n_ && !owner_.client_blocked()) response_ready();
    }
  }
}

void FilterChain::continue_side(Side& s, size_t filter) {
  if (reset_done_) return;  // the stream is gone
  const size_t pos = position_of(s, filter);
  if (pos == kNone) return;
  if (s.in_call && s.call_pos == pos) {
    s.resume_pending = true;
    return;
  }
  if (!s.stopped || s.stop_pos != pos) return;
  s.stopped = false;
  pump(s);
}

// ---------------------------------------------------------------------------------------------
// Entry points

void FilterChain::request_headers(bool end_stream) {
  req_.headers_end = end_stream;
  req_.ended_in = end_stream;
  req_.headers_pending = true;
  req_.headers_from = 0;
  pump(req_);
}

void FilterChain::feed_data(Side& s, std::string_view data, bool end_stream) {
  if (end_stream) s.ended_in = true;
  if (!s.stopped && !s.pumping) {
    // Nothing waits: the piece passes the filters without a copy.
    const uint64_t life = life_;
    const uint32_t gen = s.gen;
    s.pumping = true;
    Body body(s.scratch);
    body.borrow(data);
    push_data(s, body, end_stream, 0);
    if (life != life_ || gen != s.gen) return;
    s.pumping = false;
    pump(s);
    return;
  }
  enqueue(s, data, end_stream);
  if (over_limit(s)) {
    overflow(s);
    return;
  }
  pump(s);
  update_flow(s);
}

void FilterChain::feed_trailers(Side& s, const http::HeaderMap& trailers) {
  s.ended_in = true;
  // They may wait in the chain longer than the caller keeps them: copies in the arena.
  core::Arena& arena = owner_.arena();
  s.trailers.clear();
  for (const auto& f : trailers.fields()) s.trailers.add(arena.copy(f.name), arena.copy(f.value));
  s.queue_trailers = true;
  pump(s);
}

void FilterChain::request_data(std::string_view data, bool end_stream) {
  if (req_.dropped || req_.ended_in || reset_done_) return;
  feed_data(req_, data, end_stream);
}

void FilterChain::request_trailers(const http::HeaderMap& trailers) {
  if (req_.dropped || req_.ended_in || reset_done_) return;
  feed_trailers(req_, trailers);
}

void FilterChain::response_headers(http::ResponseHead& head, bool end_stream) {
  if (answered() || reset_done_) return;  // the target was abandoned
  resp_.head = &head;
  resp_.top = n_;
  resp_.headers_end = end_stream;
  resp_.ended_in = end_stream;
  resp_.headers_pending = true;
  resp_.headers_from = 0;
  pump(resp_);
}

void FilterChain::response_data(std::string_view data, bool end_stream) {
  if (resp_.head == nullptr || resp_.ended_in || reset_done_) return;
  feed_data(resp_, data, end_stream);
}

void FilterChain::response_trailers(const http::HeaderMap& trailers) {
  if (resp_.head == nullptr || resp_.ended_in || reset_done_) return;
  feed_trailers(resp_, trailers);
}

namespace {

// The gRPC status for an HTTP status a gRPC client would otherwise get from the proxy
// (gRPC's "HTTP to gRPC status code mapping": 503 is UNAVAILABLE, 404 UNIMPLEMENTED, ...).
std::string_view grpc_status_for(int status) {
  switch (status) {
    case 400: return "13";  // INTERNAL
    case 401: return "16";  // UNAUTHENTICATED
    case 403: return "7";   // PERMISSION_DENIED
    case 404: return "12";  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504: return "14";  // UNAVAILABLE
    default: return "2";    // UNKNOWN
  }
}

bool is_grpc(const http::RequestHead& req) {
  const http::HeaderField* ct = req.headers.find("content-type");
  return ct != nullptr && ct->value.size() >= 16 &&
         http::iequals(ct->value.substr(0, 16), "application/grpc");
}

}  // namespace

void FilterChain::local_reply(int status, std::string_view body, std::string_view content_type,
                              const http::HeaderField* extra) {
  http::ResponseHead& head = owner_.local_head();
  head.reset();
  if (status >= 300 && is_grpc(owner_.request_head())) {
    // A gRPC client reads the outcome from grpc-status, not from the HTTP status: answer as a
    // gRPC server does when a call fails before any message ("trailers-only": one HEADERS frame
    // with the status), so that a 503 here is UNAVAILABLE there, with the reason in
    // grpc-message (percent-encoded, RFC 3986 unreserved characters and spaces kept).
    head.status = 200;
    head.headers.add("Content-Type", "application/grpc");
    head.headers.add("grpc-status", grpc_status_for(status));
    std::string msg;
    for (char c : body) {
      if (c == '\n' || c == '\r') continue;
      const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == ' ' || c == '-' || c == '.' || c == '_' ||
                         c == '~';
      if (plain) {
        msg.push_back(c);
      } else {
        static const char kHex[] = "0123456789ABCDEF";
        msg.push_back('%');
        msg.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
        msg.push_back(kHex[static_cast<unsigned char>(c) & 15]);
      }
    }
    head.headers.add("grpc-message", owner_.arena().copy(msg));
    head.framing = http::BodyFraming::kNone;
    answer_from(n_, head, true);
    return;
  }
  head.status = status;
  if (!body.empty()) head.headers.add("Content-Type", content_type);
  if (extra != nullptr) {
    // The response may wait in the chain (a filter suspends it): keep copies.
    head.headers.add(owner_.arena().copy(extra->name), owner_.arena().copy(extra->value));
  }
  head.framing = body.empty() ? http::BodyFraming::kNone : http::BodyFraming::kContentLength;
  head.content_length = body.size();
  const uint64_t life = life_;
  answer_from(n_, head, body.empty());
  if (!body.empty() && life == life_ && answered_by_ == n_) response_data(body, true);
}

void FilterChain::answer_from(size_t filter, http::ResponseHead& head, bool end_stream) {
  if (resp_.headers_out) {
    // The client has another response's head: it cannot be replaced, only cut short.
    owner_.reset_client();
    return;
  }
  const bool by_filter = filter < n_;
  answered_by_ = filter;
  // The answer may wait in the chain (a filter before the answering one suspends it) longer
  // than the caller keeps its head: the chain keeps its own copy, in the stream's local head.
  http::ResponseHead& local = owner_.local_head();
  if (&head != &local) {
    core::Arena& arena = owner_.arena();
    local.reset();
    local.status = head.status;
    local.reason = arena.copy(head.reason);
    for (const auto& f : head.headers.fields()) {
      local.headers.add(arena.copy(f.name), arena.copy(f.value));
    }
    local.framing = head.framing;
    local.content_length = head.content_length;
    local.keep_alive = head.keep_alive;
  }
  // The rest of the request goes nowhere.
  clear_side(req_);
  req_.dropped = true;
  clear_side(resp_);
  if (by_filter) owner_.abandon_target();
  resp_.head = &local;
  resp_.top = filter < n_ ? filter : n_;
  resp_.headers_end = end_stream;
  resp_.ended_in = end_stream;
  resp_.headers_pending = true;
  resp_.headers_from = 0;
  pump(resp_);
}

void FilterChain::answer_data(size_t filter, std::string_view data, bool end_stream) {
  if (answered_by_ != filter) return;
  response_data(data, end_stream);
}

void FilterChain::answer_trailers(size_t filter, const http::HeaderMap& trailers) {
  if (answered_by_ != filter) return;
  response_trailers(trailers);
}

bool FilterChain::waiting() const {
  for (const Side* s : {&req_, &resp_}) {
    if (s->stopped) return true;
    for (size_t i = 0; i < n_; ++i) {
      if (s->collecting[i]) return true;
    }
  }
  return false;
}

void FilterChain::response_ready() {
  if (answered_by_ < n_) filters_[answered_by_]->on_response_ready(slots_[answered_by_]);
}

}  // namespace citadel::pipeline
