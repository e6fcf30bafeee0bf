// `to: { respond: { status, body, content_type } }`: a fixed response.
#pragma once

#include "proxy/config.h"
#include "http/pipeline/handler.h"

namespace citadel::proxy {

class RespondHandlerFactory final : public pipeline::HandlerFactory {
 public:
  explicit RespondHandlerFactory(RespondConfig config) : config_(std::move(config)) {}
  pipeline::Handler* create(core::Arena& arena) const override;

 private:
  RespondConfig config_;
};

}  // namespace citadel::proxy
