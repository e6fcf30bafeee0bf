#include "proxy/targets/respond.h"

#include "http/pipeline/filter.h"

namespace citadel::proxy {
namespace {

class RespondHandler final : public pipeline::Handler {
 public:
  explicit RespondHandler(const RespondConfig& c) : config_(c) {}
  void on_request_headers(pipeline::HandlerContext& ctx, bool) override {
    http::ResponseHead& resp = ctx.response_head();
    resp.status = config_.status;
    if (config_.body.empty()) {
      resp.framing = http::BodyFraming::kNone;
      ctx.send_response_headers(true);
      return;
    }
    resp.headers.add("Content-Type", config_.content_type);
    resp.framing = http::BodyFraming::kContentLength;
    resp.content_length = config_.body.size();
    ctx.send_response_headers(false);
    ctx.send_response_data(config_.body, true);
  }

 private:
  const RespondConfig& config_;
};

}  // namespace

pipeline::Handler* RespondHandlerFactory::create(core::Arena& arena) const {
  return pipeline::arena_new<RespondHandler>(arena, config_);
}

}  // namespace citadel::proxy
