#include "proxy/targets/redirect.h"

#include "http/pipeline/filter.h"

namespace citadel::proxy {
namespace {

class RedirectHandler final : public pipeline::Handler {
 public:
  explicit RedirectHandler(const RedirectConfig& c) : config_(c) {}
  void on_request_headers(pipeline::HandlerContext& ctx, bool) override {
    const http::RequestHead& req = ctx.request();
    std::string_view location;
    if (!config_.url.empty()) {
      location = config_.url;
    } else {
      std::string_view scheme = config_.scheme.empty() ? req.scheme : config_.scheme;
      std::string_view host = config_.host.empty() ? req.authority : config_.host;
      std::string_view path = config_.path.empty() ? req.path : config_.path;
      bool q = config_.keep_query && !req.query.empty();
      location = ctx.arena().concat({scheme, "://", host, path, q ? "?" : "", q ? req.query : ""});
    }
    http::ResponseHead& resp = ctx.response_head();
    resp.status = config_.status;
    resp.headers.add("Location", location);
    resp.framing = http::BodyFraming::kNone;
    ctx.send_response_headers(true);
  }

 private:
  const RedirectConfig& config_;
};

}  // namespace

pipeline::Handler* RedirectHandlerFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<RedirectHandler>(arena, config_);
}

}  // namespace citadel::proxy
