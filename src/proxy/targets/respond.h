// `to: { respond: { status, body, content_type } }`: a fixed response.
#pragma once

#include "proxy/config.h"
#include "proxy/handler.h"

namespace citadel::proxy {

class RespondHandlerFactory final : public HandlerFactory {
 public:
  explicit RespondHandlerFactory(RespondConfig config) : config_(std::move(config)) {}
  Handler* create(core::Arena& arena) const override;

 private:
  RespondConfig config_;
};

}  // namespace citadel::proxy
