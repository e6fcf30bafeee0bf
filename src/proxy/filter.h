// The request pipeline's filter interface.
//
// A filter sees a request on its way in (head, then body pieces) and the response on its way
// out. Each callback returns kContinue to pass control to the next filter, or kStop when the
// filter has answered (send_local_reply) or suspended: a suspended filter resumes the chain
// later with FilterContext::continue_request() on the same worker, for example when a Redis
// reply or a cache fill arrives. Filter objects are created per request in the request's arena
// by their FilterFactory and destroyed when the request ends. Worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/arena.h"
#include "core/config_reader.h"
#include "core/event_loop.h"
#include "http/message.h"
#include "http/stream.h"

namespace citadel::proxy {

enum class FilterStatus { kContinue, kStop };

// What a filter may do to its request. Implemented by ActiveStream.
class FilterContext {
 public:
  // Answers the request from here; the remaining filters and the target are skipped.
  virtual void send_local_reply(int status, std::string_view body,
                                std::string_view content_type = "text/plain") = 0;
  // Resumes the request chain after a filter returned kStop without answering.
  virtual void continue_request() = 0;
  virtual core::Arena& arena() = 0;
  virtual core::EventLoop& loop() = 0;
  virtual const http::ConnectionInfo& connection() const = 0;
  virtual std::string_view route_name() const = 0;

 protected:
  ~FilterContext() = default;
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual FilterStatus on_request_headers(FilterContext&, http::RequestHead&, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_request_data(FilterContext&, std::string_view /*data*/, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_response_headers(FilterContext&, http::ResponseHead&, bool /*end*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus on_response_data(FilterContext&, std::string_view /*data*/, bool /*end*/) {
    return FilterStatus::kContinue;
  }
};

// Built once per config snapshot from the filter's options; creates a Filter per request.
// create() runs on workers concurrently, so a factory is immutable after construction.
class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  // Placement-constructs the filter in `arena`; the stream calls its destructor.
  virtual Filter* create(core::Arena& arena) const = 0;
};

// Parses a filter's options into a factory. Errors go to `node.error()`; return nullptr then.
class FilterConfigParser {
 public:
  virtual ~FilterConfigParser() = default;
  virtual std::string_view name() const = 0;
  virtual std::unique_ptr<FilterFactory> parse(const core::ConfigNode& node) const = 0;
};

template <class T, class... Args>
T* arena_new(core::Arena& arena, Args&&... args) {
  void* mem = arena.allocate_aligned(sizeof(T), alignof(T));
  return new (mem) T(std::forward<Args>(args)...);
}

}  // namespace citadel::proxy
