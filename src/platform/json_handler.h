// The base of a platform service's per-request handler for JSON APIs: the method check (405
// with Allow), a bounded request body collected before the endpoint runs (413 past it), JSON
// answers that caches never keep, RFC 6749-shaped errors, SQL and blocking work whose results
// come back on the worker only while the stream is still the one that asked. A service's
// handler derives from it, routes in on_request_headers(), then calls begin().
#pragma once

#include <boost/json.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/pipeline/blocking.h"
#include "http/pipeline/handler.h"
#include "observe/metrics.h"
#include "store/sql.h"

namespace citadel::platform {

// `s` fit for a log line or a stored field: control characters become '?', at most `max` bytes.
std::string printable(std::string_view s, size_t max);

class JsonHandler : public pipeline::Handler {
 public:
  void on_request_data(pipeline::HandlerContext& ctx, std::string_view data, bool end) override;
  void on_reset() override { done_ = true; }

 protected:
  static constexpr size_t kMaxBody = 64 * 1024;

  // After routing: refuses a method not in `allow` ("GET, POST"), then runs dispatch() once the
  // body (for POST, PUT, PATCH and DELETE) has arrived.
  void begin(pipeline::HandlerContext& ctx, bool end_stream, std::string_view allow);
  virtual void dispatch() = 0;

  void reply(int status, std::string body, bool no_store = true);
  // {"error": code, "error_description": description}; a 401 carries a Bearer challenge
  // (RFC 6750, 3) unless bearer_challenge_ is off (the token endpoint's clients authenticate
  // otherwise).
  void error(int status, std::string_view code, std::string_view description);
  // The body as one JSON object (Content-Type: application/json, no member given twice);
  // false when it is not, and then answered.
  bool read_json(boost::json::object& out);
  // The store failed: counted on `errors`, logged as `what: message`, answered 503 with
  // Retry-After.
  void store_unavailable(const store::SqlResult& r, observe::Counter* errors, const char* what);
  static std::string member(const boost::json::object& o, std::string_view key);

  // `then(SqlResult&)` on the worker, only while this stream is the one that asked and has not
  // been answered; `keep` holds what the engine and the callback need alive.
  template <class F>
  void sql(store::SqlDatabase& db, std::shared_ptr<const void> keep,
           std::vector<store::SqlStatement> statements, bool read_only, F then) {
    pipeline::StreamHandle h = ctx_->handle();
    db.execute(
        ctx_->loop(), std::move(statements),
        [this, h, keep = std::move(keep), then = std::move(then)](store::SqlResult& r) mutable {
          if (!h.valid() || done_) return;  // the client left; the store's work stands
          then(r);
        },
        read_only);
  }

  // `work` on the blocking pool, `then(result)` back here (see pipeline/blocking.h); a full pool
  // answers 503 with Retry-After at once.
  template <class Work, class Then>
  void blocking(Work work, Then then) {
    if (!pipeline::run_blocking(ctx_->worker(), ctx_->handle(), std::move(work),
                                [this, then = std::move(then)](auto result) mutable {
                                  if (!done_) then(std::move(result));
                                })) {
      ctx_->response_head().headers.add("Retry-After", "1");
      error(503, "temporarily_unavailable", "too busy now");
    }
  }

  pipeline::HandlerContext* ctx_ = nullptr;
  std::string body_;
  bool done_ = false;  // answered, or the stream is gone
  bool dispatched_ = false;
  bool bearer_challenge_ = true;

 private:
  std::string out_;
};

}  // namespace citadel::platform
