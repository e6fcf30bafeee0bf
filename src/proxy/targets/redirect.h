// `to: { redirect: { status, url | scheme, host, path, keep_query } }`: a redirect whose
// Location is the configured URL, or the request's own URL with the configured parts replaced.
#pragma once

#include "proxy/config.h"
#include "http/pipeline/handler.h"

namespace citadel::proxy {

class RedirectHandlerFactory final : public pipeline::HandlerFactory {
 public:
  explicit RedirectHandlerFactory(RedirectConfig config) : config_(std::move(config)) {}
  pipeline::Handler* create(core::Arena& arena) const override;

 private:
  RedirectConfig config_;
};

}  // namespace citadel::proxy
